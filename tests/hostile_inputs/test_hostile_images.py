"""Images that are not what they say: image inputs decoded and checked before anything is sent or stored (the run log
keeps a reference, never the bytes); results decoded within the pixel limit (a failed row, not ok); contact sheets
draw a placeholder for any unreadable file."""

from __future__ import annotations

import hashlib
import io
import json
import uuid
from pathlib import Path

import pytest
from hostile_server import (
    HostileServer,
    json_answer,
    png_bomb,
    png_bytes,
    png_header_only,
    png_signature_then_garbage,
    result_item,
    truncated_png,
)

from kandinsky_nb import spec
from kandinsky_nb._media import base64_text, data_uri
from kandinsky_nb.analysis.grid import contact_sheet
from kandinsky_nb.backends.runware import RunwareBackend
from kandinsky_nb.errors import RequestValidationError, ResponseValidationError
from kandinsky_nb.protocol import RetryPolicy
from kandinsky_nb.runlog.store import RunLog
from kandinsky_nb.session import Session
from kandinsky_nb.types import GeneratedImage, Generation, ImageInferenceRequest, ImageInferenceResult

FAST = RetryPolicy(max_retries=1, initial_delay=0.01, max_delay=0.02, poll_initial=0.02, poll_max=0.05)
KEY = "rw-hostile-images-key-0001"


def request(**fields) -> ImageInferenceRequest:
    return ImageInferenceRequest(**{"positivePrompt": "a red fox in snow", **fields})


def refused(**fields) -> RequestValidationError:
    with pytest.raises(RequestValidationError) as caught:
        request(**fields)
    return caught.value


class Runware:
    """A hostile loopback server answering uploads with a UUID and inferences with ``image`` (inline or by URL)."""

    def __init__(self, image: bytes, *, by_url: bool = False) -> None:
        self.image = image
        self.by_url = by_url
        self.server = HostileServer(self._answer)

    def _answer(self, received):
        if received.method == "GET":
            return 200, "image/png", self.image
        items = []
        for task in received.tasks:
            if task["taskType"] == "imageUpload":
                items.append({"taskType": "imageUpload", "taskUUID": task["taskUUID"], "imageUUID": str(uuid.uuid4())})
            elif self.by_url:
                items.append(result_item(task, imageURL=f"{self.server.url}/images/x.png", cost=0.001))
            else:
                items.append(result_item(task, imageBase64Data=base64_text(self.image), cost=0.001))
        return json_answer({"data": items})

    def __enter__(self) -> Runware:
        self.server.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.__exit__(*exc)

    def backend(self) -> RunwareBackend:
        return RunwareBackend(KEY, base_url=self.server.url, timeout=5, retry_policy=FAST)


# -- image inputs ----------------------------------------------------------------------------------------------------
@pytest.fixture
def text_file(tmp_path) -> Path:
    path = tmp_path / "notes.png"  # the name lies; the bytes are text
    path.write_text("RUNWARE_API_KEY=secret\nnot an image\n")
    return path


@pytest.mark.parametrize("field", ["seedImage", "referenceImages"])
def test_a_file_that_is_not_an_image_is_refused_naming_the_field(field, text_file):
    value = text_file if field == "seedImage" else [png_bytes(), text_file]
    error = refused(**{field: value})
    name = "seedImage" if field == "seedImage" else "referenceImages[1]"
    assert error.fields == [name]
    assert "not an image" in str(error) and "notes.png" in str(error)
    assert "secret" not in str(error)  # the file's content never reaches the message


def test_proc_self_environ_is_refused_and_never_read_into_anything(monkeypatch):
    monkeypatch.setenv("KNB_CANARY", "canary-8d1e6f")
    for value in ("/proc/self/environ", Path("/proc/self/environ")):
        error = refused(seedImage=value)
        assert error.fields == ["seedImage"] and "canary-8d1e6f" not in str(error)


@pytest.mark.parametrize(
    ("data", "said"),
    [
        (png_signature_then_garbage(), "header cannot be read"),
        (truncated_png(), "cannot be decoded"),
        (b"GIF89a" + b"\0" * 3, "header cannot be read"),
        (b"hello, world", "not an image"),
    ],
)
def test_bytes_that_only_look_like_an_image_are_refused(data, said, tmp_path):
    path = tmp_path / "input.png"
    path.write_bytes(data)
    for value in (data, path, str(path), data_uri(data, "png")):
        error = refused(seedImage=value)
        assert error.fields == ["seedImage"], value
        assert said in str(error) or "not an image" in str(error)


@pytest.mark.parametrize("side", [12000, 20000])
def test_an_input_past_the_pixel_limit_is_refused_before_anything_is_sent(side, tmp_path):
    bomb = png_header_only(side, side)
    path = tmp_path / "huge.png"
    path.write_bytes(bomb)
    with Runware(png_bytes()) as runware:
        session = Session(runware.backend(), home=tmp_path / "home")
        for value in (bomb, path, base64_text(bomb)):
            with pytest.raises(RequestValidationError) as caught:
                session.generate("a red fox in snow", seedImage=value)
            message = str(caught.value)
            assert caught.value.fields == ["seedImage"]
            assert f"{side}x{side}" in message and f"{spec.MAX_INPUT_PIXELS:,}" in message
        assert runware.server.received == []
        assert len(session.runs) == 0
        session.close()


def test_untrusted_requests_may_not_name_local_files(tmp_path):
    path = tmp_path / "fox.png"
    path.write_bytes(png_bytes())
    with pytest.raises(RequestValidationError) as caught:
        ImageInferenceRequest.from_untrusted({"positivePrompt": "a fox", "seedImage": str(path)})
    assert caught.value.fields == ["seedImage"] and "not accepted here" in str(caught.value)
    data = ImageInferenceRequest.from_untrusted({"positivePrompt": "a fox", "seedImage": data_uri(png_bytes())})
    assert data.seedImage is not None and data.seedImage.kind == "data_uri"


def test_a_local_file_is_read_once(tmp_path):
    """The checked bytes are the bytes sent: swapping the file afterwards changes nothing."""
    path = tmp_path / "fox.png"
    path.write_bytes(png_bytes(colour=(1, 2, 3)))
    req = request(seedImage=path)
    path.write_text("swapped for text after the check")
    assert req.seedImage is not None and req.seedImage.read_bytes() == png_bytes(colour=(1, 2, 3))


def test_the_run_log_stores_a_reference_never_the_input_bytes(tmp_path):
    image = png_bytes(48, 32, colour=(9, 99, 199))
    path = tmp_path / "my fox.png"
    path.write_bytes(image)
    with Runware(png_bytes()) as runware:
        session = Session(runware.backend(), home=tmp_path / "home")
        session.generate("a red fox in snow", seedImage=path, referenceImages=[image])
        (row,) = session.runs.rows()
        image_file = session.runs.image_path(row)
        session.close()
    logged = json.loads(row["request_json"])
    assert logged["seedImage"] == {
        "sha256": hashlib.sha256(image).hexdigest(),
        "byteSize": len(image),
        "width": 48,
        "height": 32,
        "format": "png",
        "fileName": "my fox.png",
    }
    assert logged["referenceImages"][0]["width"] == 48 and "fileName" not in logged["referenceImages"][0]
    database = b"".join(p.read_bytes() for p in (tmp_path / "home").glob("runs.db*"))
    assert base64_text(image).encode()[:40] not in database
    assert str(tmp_path).encode() not in database  # no path of the input either
    # the image file's embedded parameters carry the same reference
    from kandinsky_nb.runlog.files import read_embedded_params

    embedded = read_embedded_params(image_file)
    assert embedded is not None and embedded["seedImage"] == logged["seedImage"]


def test_a_request_rebuilt_from_the_log_cannot_send_its_missing_inputs(tmp_path):
    image = png_bytes()
    with Runware(png_bytes()) as runware:
        backend = runware.backend()
        logged = json.loads(json.dumps(request(seedImage=image).to_log()))
        rebuilt = ImageInferenceRequest.model_validate(logged)  # valid: it names its input by hash
        assert rebuilt.seedImage is not None and rebuilt.seedImage.kind == "logged"
        with pytest.raises(RequestValidationError) as caught:
            backend.generate(rebuilt)
        backend.close()
        assert runware.server.received == []
    assert caught.value.fields == ["seedImage"] and "run log" in str(caught.value)
    again = rebuilt.replace(seedImage=image)
    assert again.seedImage is not None and again.seedImage.kind == "bytes"


# -- results ---------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("by_url", [False, True], ids=["inline", "url"])
@pytest.mark.parametrize(
    ("body", "said"),
    [
        (png_signature_then_garbage(), "header cannot be read"),
        (truncated_png(), "cannot be decoded"),
        (png_bomb(5000, 5000), f"the limit is {spec.MAX_RESULT_PIXELS:,} pixels"),
    ],
    ids=["garbage-after-png-magic", "truncated", "decompression-bomb"],
)
def test_a_result_that_is_not_a_usable_image_is_a_failed_row(body, said, by_url, tmp_path):
    with Runware(body, by_url=by_url) as runware:
        session = Session(runware.backend(), home=tmp_path / "home")
        with pytest.raises(ResponseValidationError) as caught:
            session.generate("a red fox in snow")
        (row,) = session.runs.rows()
        session.close()
    assert said in str(caught.value)
    assert row["status"] == "failed" and row["image_path"] is None
    assert said in row["error_message"]
    assert not list((tmp_path / "home" / "images").rglob("*.*"))


def test_a_sound_result_still_passes(tmp_path):
    with Runware(png_bytes(24, 24)) as runware:
        session = Session(runware.backend(), home=tmp_path / "home")
        generation = session.generate("a red fox in snow")
        assert session.runs.rows()[0]["status"] == "ok"
        session.close()
    assert generation.images[0].data == png_bytes(24, 24)


# -- contact sheets --------------------------------------------------------------------------------------------------
def test_a_contact_sheet_draws_unreadable_files_as_placeholders(tmp_path):
    log = RunLog(tmp_path / "home")
    for steps in (10, 20, 30, 40):
        req = request(steps=steps, seed=steps)
        data = png_bytes(colour=(steps, 0, 0))
        result = ImageInferenceResult(taskUUID=req.taskUUID, imageUUID=str(uuid.uuid4()), seed=steps)
        log.record_generation(Generation(req, [GeneratedImage(result=result, data=data)], "runware", 0.1))
    rows = {row["steps"]: row for row in log.rows()}
    log.image_path(rows[20]).write_bytes(png_signature_then_garbage())
    log.image_path(rows[30]).write_bytes(png_bomb(6000, 6000))
    log.image_path(rows[40]).write_bytes(truncated_png())
    sheet = contact_sheet(log.df, x="steps")
    statuses = {placement.x: placement.status for placement in sheet.placements}
    assert statuses == {10: "ok", 20: "unreadable", 30: "unreadable", 40: "unreadable"}
    buffer = io.BytesIO()
    sheet.image.save(buffer, format="PNG")  # the sheet itself is whole
    log.close()
