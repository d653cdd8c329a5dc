"""Request side of the wire: validated requests and helper tasks -> the JSON task objects that go in the array.

Everything here is pure: no I/O, no clock, no randomness except the UUIDs a new helper task needs.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Mapping
from typing import Any

from .._media import data_uri
from ..types import ImageInferenceRequest, ImageRef

__all__ = [
    "AUTHENTICATION",
    "GET_RESPONSE",
    "IMAGE_UPLOAD",
    "PING",
    "content_hash",
    "image_upload_task",
    "images_to_upload",
    "inference_task",
    "poll_task",
]

# Task types besides imageInference (spec.TASK_TYPE): the client sends the first two, the server answers all four.
IMAGE_UPLOAD = "imageUpload"
GET_RESPONSE = "getResponse"
AUTHENTICATION = "authentication"
PING = "ping"


def content_hash(data: bytes) -> str:
    """The key under which an uploaded image is remembered: the same bytes are uploaded once per backend."""
    return hashlib.sha256(data).hexdigest()


def images_to_upload(request: ImageInferenceRequest) -> dict[str, bytes]:
    """The local images (paths, bytes) this request holds, by content hash. Forms Runware takes directly (UUID,
    URL, data URI, base64) are not uploaded."""
    found: dict[str, bytes] = {}
    for ref in _image_refs(request):
        if not ref.sent_as_is:
            data = ref.read_bytes()
            found[content_hash(data)] = data
    return found


def inference_task(request: ImageInferenceRequest, uploaded: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The ``imageInference`` task object for a request.

    * Wire names exactly as the request's attributes; unset (None) fields are not sent, so the model's defaults apply.
    * ``includeCost`` is sent as ``true`` when the request leaves it unset: the run log and cost analysis need the
      server's own price for every image, and asking for it costs nothing. An explicit ``includeCost=False`` is sent
      as is.
    * Local image inputs (paths, bytes) are replaced by the UUID they were uploaded under (``uploaded`` maps content
      hash -> imageUUID), or sent inline as data URIs when ``uploaded`` is None; other image forms are sent as they
      are.
    """
    task = request.to_wire()
    if request.includeCost is None:
        task["includeCost"] = True
    if request.seedImage is not None:
        task["seedImage"] = _image_on_wire(request.seedImage, uploaded)
    if request.referenceImages:
        task["referenceImages"] = [_image_on_wire(ref, uploaded) for ref in request.referenceImages]
    return task


def _image_on_wire(ref: ImageRef, uploaded: Mapping[str, str] | None) -> str:
    if ref.sent_as_is or uploaded is None:
        return ref.to_wire()
    key = content_hash(ref.read_bytes())
    if key not in uploaded:
        raise KeyError(f"image {ref!r} was not uploaded before the task was built")
    return uploaded[key]


def _image_refs(request: ImageInferenceRequest) -> list[ImageRef]:
    refs = [request.seedImage] if request.seedImage is not None else []
    return refs + list(request.referenceImages or [])


def image_upload_task(data: bytes, task_uuid: str | None = None) -> dict[str, Any]:
    """An ``imageUpload`` task carrying the image as a data URI."""
    return {"taskType": IMAGE_UPLOAD, "taskUUID": task_uuid or str(uuid.uuid4()), "image": data_uri(data)}


def poll_task(task_uuid: str) -> dict[str, Any]:
    """A ``getResponse`` task: asks for the current (cumulative) state of an earlier task."""
    return {"taskType": GET_RESPONSE, "taskUUID": task_uuid}
