"""Image inputs (``seedImage``, ``referenceImages``): every form a user has at hand, classified explicitly.

Runware accepts an image as a UUID of an uploaded or generated image, a URL, a data URI or raw base64. Users also hold
local files, bytes and PIL images. The official SDKs guessed and got it wrong both ways (valid UUIDs read as missing
files; paths sent as text), so the rules here are explicit and ordered:

1. ``pathlib.Path``            -> a local file (must exist)
2. ``bytes`` / PIL image       -> in-memory image data
3. a string that is a UUID     -> a Runware image UUID, sent as is
4. ``data:image/...;base64,``  -> a data URI, sent as is
5. ``http://`` or ``https://`` -> a URL, sent as is
6. an existing file path       -> a local file
7. valid base64 of an image    -> raw base64, sent as is

Anything else is refused with the list above. Local files, bytes and PIL images are uploaded once by the Runware
engine (``imageUpload``) and then referred to by UUID; a local engine reads them directly.
"""

from __future__ import annotations

import base64
import binascii
import io
import re
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from .._media import data_uri, decode_data_uri, sniff_format

ImageKind = Literal["uuid", "data_uri", "url", "base64", "path", "bytes"]
SENT_AS_IS: tuple[ImageKind, ...] = ("uuid", "data_uri", "url", "base64")

_DATA_URI = re.compile(r"^data:image/(png|jpe?g|webp|bmp|gif);base64,", re.IGNORECASE)


@dataclass(frozen=True, eq=True)
class ImageRef:
    """An image input, classified. ``value`` is the string sent as is, or the path, or the encoded bytes."""

    kind: ImageKind
    value: str | bytes

    @classmethod
    def parse(cls, obj: Any) -> ImageRef:
        if isinstance(obj, ImageRef):
            return obj
        if isinstance(obj, Path):
            return cls._from_path(obj)
        if isinstance(obj, bytes | bytearray | memoryview):
            data = bytes(obj)
            if sniff_format(data) is None:
                raise ValueError("bytes are not a PNG, JPEG, WEBP, GIF or BMP image")
            return cls("bytes", data)
        if _is_pil_image(obj):
            buffer = io.BytesIO()
            obj.save(buffer, format="PNG")
            return cls("bytes", buffer.getvalue())
        if not isinstance(obj, str):
            raise ValueError(
                f"an image must be a UUID, URL, data URI, base64 text, a path, bytes or a PIL image, not {type(obj).__name__}"
            )
        text = obj.strip()
        if _is_uuid(text):
            return cls("uuid", text)
        if _DATA_URI.match(text):
            return cls("data_uri", text)
        if text.startswith(("http://", "https://")):
            return cls("url", text)
        if len(text) < 4096 and Path(text).expanduser().is_file():
            return cls._from_path(Path(text).expanduser())
        if _is_image_base64(text):
            return cls("base64", text)
        raise ValueError(
            "not an image: expected a Runware image UUID, an http(s) URL, a data:image/...;base64 URI, base64 image "
            "data, an existing file path, bytes or a PIL image"
        )

    @classmethod
    def _from_path(cls, path: Path) -> ImageRef:
        if not path.is_file():
            raise ValueError(f"no such image file: {str(path)!r}")
        return cls("path", str(path.resolve()))

    @property
    def sent_as_is(self) -> bool:
        """True when the Runware API takes this form directly (no upload needed)."""
        return self.kind in SENT_AS_IS

    def read_bytes(self) -> bytes:
        """The image's encoded bytes, for forms that hold them (path, bytes, data URI, base64)."""
        if self.kind == "bytes":
            return bytes(self.value)  # type: ignore[arg-type]
        if self.kind == "path":
            return Path(str(self.value)).read_bytes()
        if self.kind == "data_uri":
            return decode_data_uri(str(self.value))
        if self.kind == "base64":
            return base64.b64decode(str(self.value))
        raise ValueError(f"a {self.kind} image reference holds no bytes; fetch it first")

    def to_wire(self) -> str:
        """The string sent on the wire. Local data becomes a data URI (the Runware engine uploads it instead)."""
        if self.sent_as_is:
            return str(self.value)
        return data_uri(self.read_bytes())

    def __repr__(self) -> str:
        if self.kind == "bytes":
            return f"ImageRef(bytes, {len(self.value)} bytes)"
        text = str(self.value)
        return f"ImageRef({self.kind}, {text[:60] + '...' if len(text) > 60 else text!r})"


def _is_uuid(text: str) -> bool:
    try:
        uuid.UUID(text)
    except ValueError:
        return False
    return len(text) == 36


def _is_image_base64(text: str) -> bool:
    if len(text) < 16 or len(text) % 4:
        return False
    try:
        head = base64.b64decode(text[:64], validate=True)
    except (binascii.Error, ValueError):
        return False
    return sniff_format(head) is not None


def _is_pil_image(obj: Any) -> bool:
    try:
        from PIL import Image
    except ImportError:  # pillow is a core dependency; this only guards odd installs
        return False
    return isinstance(obj, Image.Image)
