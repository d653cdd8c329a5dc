"""Image inputs (``seedImage``, ``referenceImages``): every form a user has at hand, classified explicitly, and
every image that holds data decoded and checked before it is sent or stored.

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
8. a run-log reference         -> an input the run log recorded by its hash (``{"sha256": ..., "byteSize": ...}``);
                                  it holds no pixels, so it cannot be sent again

Anything else is refused with the list above. A local file is read once, when the request is made (never again, so
the file cannot change between the check and the upload). Every form that holds data (file, bytes, PIL image, data
URI, base64) must decode as a PNG, JPEG, WEBP, GIF or BMP image within :data:`~kandinsky_nb.spec.MAX_INPUT_PIXELS`:
a text file, ``/proc/self/environ`` or a decompression bomb is refused before anything is sent.

Requests that come from another machine (a server's POST body) are validated with local files refused (see
``ImageInferenceRequest.from_untrusted``): a path there names a file on the server's disk.

The run log stores :meth:`ImageRef.reference` (hash, byte size, dimensions, format, file name), never the bytes.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import io
import re
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from .. import spec
from .._media import data_uri, decode_data_uri, sniff_format
from ..errors import UnreadableImage

if TYPE_CHECKING:
    from PIL import Image as PILImage

__all__ = ["ImageFacts", "ImageRef", "UnreadableImage", "inspect_image", "open_image"]

ImageKind = Literal["uuid", "data_uri", "url", "base64", "path", "bytes", "logged"]
SENT_AS_IS: tuple[ImageKind, ...] = ("uuid", "data_uri", "url", "base64")
HOLDS_DATA: tuple[ImageKind, ...] = ("path", "bytes", "data_uri", "base64")

_DATA_URI = re.compile(r"^data:image/(png|jpe?g|webp|bmp|gif);base64,", re.IGNORECASE)
_SHA256 = re.compile(r"[0-9a-f]{64}")
_FORMS = (
    "a Runware image UUID, an http(s) URL, a data:image/...;base64 URI, base64 image data, an existing file path, "
    "bytes or a PIL image"
)


@dataclass(frozen=True)
class ImageFacts:
    """What a checked image is: its format, dimensions, size in bytes and sha256. The run log keeps these, not the
    bytes."""

    format: str
    width: int
    height: int
    byte_size: int
    sha256: str

    @property
    def pixels(self) -> int:
        return self.width * self.height


def _decoder(fmt: str) -> Any:
    """Pillow's image class for a sniffed format. Made directly rather than through ``Image.open``: that one warns,
    then raises, on Pillow's own (larger) bomb limit before our limit can say what is wrong."""
    from PIL import BmpImagePlugin, GifImagePlugin, JpegImagePlugin, PngImagePlugin, WebPImagePlugin

    return {
        "png": PngImagePlugin.PngImageFile,
        "jpeg": JpegImagePlugin.JpegImageFile,
        "webp": WebPImagePlugin.WebPImageFile,
        "gif": GifImagePlugin.GifImageFile,
        "bmp": BmpImagePlugin.BmpImageFile,
    }[fmt]


def _clipped(text: str, limit: int = 120) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def open_image(data: bytes, *, max_pixels: int, what: str = "the image") -> PILImage.Image:
    """A Pillow image of ``data`` whose header has been read and whose size is within ``max_pixels``; its pixels
    are not decoded yet (``load()`` does that). Raises :class:`UnreadableImage`; close the image after use."""
    fmt = sniff_format(data)
    if fmt is None:
        raise UnreadableImage(
            f"{what} is not an image: its first bytes are not a PNG, JPEG, WEBP, GIF or BMP signature "
            f"({len(data)} bytes)"
        )
    try:
        image = _decoder(fmt)(io.BytesIO(data))
    except Exception as exc:  # Pillow reports a broken header with many exception types; all mean "not an image"
        raise UnreadableImage(
            f"{what} starts like a {fmt.upper()} image but its header cannot be read "
            f"({type(exc).__name__}: {_clipped(str(exc))})"
        ) from None
    width, height = image.size
    if width <= 0 or height <= 0 or width * height > max_pixels:
        image.close()
        raise UnreadableImage(
            f"{what} is {width}x{height} pixels ({width * height:,}); the limit is {max_pixels:,} pixels. "
            "Scale it down (the model works at about 1 megapixel) and use it again"
        )
    return image


def inspect_image(data: bytes, *, max_pixels: int, what: str = "the image") -> ImageFacts:
    """Decode ``data`` fully and return its facts, or raise :class:`UnreadableImage`.

    The dimensions are read from the header and checked against ``max_pixels`` BEFORE the pixels are decoded, so a
    decompression bomb costs nothing; then every pixel is decoded, so a body that only starts like an image (a PNG
    signature followed by garbage, a truncated file) is refused too. ``what`` names the image in the message.
    """
    image = open_image(data, max_pixels=max_pixels, what=what)
    fmt = sniff_format(data) or ""
    with image:
        width, height = image.size
        try:
            image.load()
        except Exception as exc:  # truncated data, bad CRCs, garbage after the header: Pillow raises various types
            raise UnreadableImage(
                f"{what} is a {width}x{height} {fmt.upper()} whose pixels cannot be decoded "
                f"({type(exc).__name__}: {_clipped(str(exc))})"
            ) from None
    return ImageFacts(fmt, width, height, len(data), hashlib.sha256(data).hexdigest())


def _checked_input(data: bytes, what: str) -> ImageFacts:
    return inspect_image(data, max_pixels=spec.MAX_INPUT_PIXELS, what=what)


@dataclass(frozen=True, eq=True)
class ImageRef:
    """An image input, classified.

    ``value``: the string sent as is (uuid, url, data_uri, base64), the encoded bytes (path, bytes), or the sha256
    of a logged input. ``name``: the file name of a path input. ``facts``: format, dimensions, size and hash of every
    form that holds data, checked when the reference was made.
    """

    kind: ImageKind
    value: str | bytes
    name: str | None = None
    facts: ImageFacts | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        # Data made into a reference by hand (ImageRef("bytes", data)) is checked like data that came through parse.
        if self.kind in ("bytes", "path") and self.facts is None:
            if not isinstance(self.value, bytes | bytearray | memoryview):
                raise UnreadableImage(f"an ImageRef of kind {self.kind!r} holds the image's bytes; use ImageRef.parse")
            object.__setattr__(self, "value", bytes(self.value))
            object.__setattr__(self, "facts", _checked_input(self.value, "the image"))

    @classmethod
    def parse(cls, obj: Any, *, local_files: bool = True) -> ImageRef:
        """Classify an image input (the rules in the module's docstring). ``local_files=False`` refuses paths: for
        requests from another machine, where a path would name a file on this one."""
        if isinstance(obj, ImageRef):
            if obj.kind == "path" and not local_files:
                raise UnreadableImage("a local file is not accepted here; send the image as data, a URL or a UUID")
            return obj
        if isinstance(obj, Path):
            if not local_files:
                raise UnreadableImage("a file path is not accepted here; send the image as data, a URL or a UUID")
            return cls._from_path(obj)
        if isinstance(obj, bytes | bytearray | memoryview):
            data = bytes(obj)
            return cls("bytes", data, facts=_checked_input(data, "the bytes given"))
        if _is_pil_image(obj):
            return cls._from_pil(obj)
        if isinstance(obj, dict):
            return cls._from_log(obj)
        if not isinstance(obj, str):
            raise UnreadableImage(f"an image must be {_FORMS}, not {type(obj).__name__}")
        text = obj.strip()
        if _is_uuid(text):
            return cls("uuid", text)
        if _DATA_URI.match(text):
            data = _b64(text.split(",", 1)[1], "the data URI")
            return cls("data_uri", text, facts=_checked_input(data, "the data URI's image"))
        if text.startswith(("http://", "https://")):
            return cls("url", text)
        if local_files and _is_file(text):
            return cls._from_path(Path(text).expanduser())
        if _is_image_base64(text):
            data = _b64(text, "the base64 text")
            return cls("base64", text, facts=_checked_input(data, "the base64 image"))
        where = "" if local_files else " (file paths are not accepted here)"
        raise UnreadableImage(f"not an image: expected {_FORMS}{where}")

    @classmethod
    def _from_path(cls, path: Path) -> ImageRef:
        try:
            path = path.expanduser()
            is_file = path.is_file()
        except (OSError, ValueError, RuntimeError):  # a name too long, a NUL byte, an unknown ~user
            is_file = False
        if not is_file:
            raise UnreadableImage(f"no such image file: {str(path)!r}")
        try:
            with path.open("rb") as handle:
                # Read at most one byte past the cap: /proc files report size 0, so their size cannot be trusted.
                data = handle.read(spec.MAX_INPUT_BYTES + 1)
        except OSError as exc:
            raise UnreadableImage(f"the file {path.name!r} cannot be read ({exc.strerror or exc})") from None
        if len(data) > spec.MAX_INPUT_BYTES:
            raise UnreadableImage(
                f"the file {path.name!r} is larger than {spec.MAX_INPUT_BYTES:,} bytes; an image input is smaller. "
                "Scale or compress it and use it again"
            )
        facts = _checked_input(data, f"the file {path.name!r}")
        return cls("path", data, name=path.name, facts=facts)

    @classmethod
    def _from_pil(cls, image: Any) -> ImageRef:
        width, height = image.size
        if width * height > spec.MAX_INPUT_PIXELS:
            raise UnreadableImage(
                f"the PIL image is {width}x{height} pixels ({width * height:,}); the limit is "
                f"{spec.MAX_INPUT_PIXELS:,} pixels. Scale it down (image.thumbnail(...)) and use it again"
            )
        buffer = io.BytesIO()
        image.save(buffer, format="PNG")
        data = buffer.getvalue()
        return cls("bytes", data, facts=_checked_input(data, "the PIL image"))

    @classmethod
    def _from_log(cls, record: dict[str, Any]) -> ImageRef:
        """A reference the run log wrote (:meth:`reference`): it names the image by hash and holds no pixels."""
        sha256, size = record.get("sha256"), record.get("byteSize")
        width, height, fmt = record.get("width"), record.get("height"), record.get("format")
        name = record.get("fileName")
        well_formed = (
            set(record) <= {"sha256", "byteSize", "width", "height", "format", "fileName"}
            and isinstance(sha256, str)
            and _SHA256.fullmatch(sha256) is not None
            and all(type(v) is int and v >= 0 for v in (size, width, height))
            and isinstance(fmt, str)
            and (name is None or isinstance(name, str))
        )
        if not well_formed:
            raise UnreadableImage(
                f"an object is accepted only as a run-log image reference (sha256, byteSize, width, height, format, "
                f"fileName); otherwise an image must be {_FORMS}"
            )
        facts = ImageFacts(str(fmt), int(width), int(height), int(size), str(sha256))  # type: ignore[arg-type]
        return cls("logged", str(sha256), name=name, facts=facts)

    @property
    def sent_as_is(self) -> bool:
        """True when the Runware API takes this form directly (no upload needed)."""
        return self.kind in SENT_AS_IS

    @property
    def holds_data(self) -> bool:
        """True when the reference carries the image's bytes (file, bytes, data URI, base64)."""
        return self.kind in HOLDS_DATA

    def read_bytes(self) -> bytes:
        """The image's encoded bytes, for forms that hold them (path, bytes, data URI, base64)."""
        if self.kind in ("bytes", "path"):
            return bytes(self.value)  # type: ignore[arg-type]
        if self.kind == "data_uri":
            return decode_data_uri(str(self.value))
        if self.kind == "base64":
            return base64.b64decode(str(self.value))
        if self.kind == "logged":
            raise UnreadableImage(self.logged_message())
        raise UnreadableImage(f"a {self.kind} image reference holds no bytes; fetch it first")

    def logged_message(self) -> str:
        """Why a logged input cannot be used again, and what to do."""
        label = f"{self.name!r} " if self.name else ""
        return (
            f"the image {label}(sha256 {str(self.value)[:12]}...) was recorded in the run log by reference; the log "
            "keeps no image input's bytes. Pass the image again (a path, bytes or PIL image) to run this request"
        )

    def to_wire(self) -> str:
        """The string sent on the wire. Local data becomes a data URI (the Runware engine uploads it instead)."""
        if self.sent_as_is:
            return str(self.value)
        return data_uri(self.read_bytes())

    def reference(self) -> str | dict[str, Any]:
        """What the run log stores for this input: the UUID or URL as sent, else its facts (hash, byte size,
        dimensions, format and file name); never the bytes, a data URI or a path."""
        if self.kind in ("uuid", "url"):
            return str(self.value)
        facts = self.facts
        assert facts is not None  # every form that holds data is checked when made
        record: dict[str, Any] = {
            "sha256": facts.sha256,
            "byteSize": facts.byte_size,
            "width": facts.width,
            "height": facts.height,
            "format": facts.format,
        }
        if self.name:
            record["fileName"] = self.name
        return record

    def __repr__(self) -> str:
        if self.facts is not None and self.kind in ("bytes", "path", "logged"):
            facts = self.facts
            label = f"{self.name!r}, " if self.name else ""
            return f"ImageRef({self.kind}, {label}{facts.width}x{facts.height} {facts.format}, {facts.byte_size} bytes)"
        text = str(self.value)
        return f"ImageRef({self.kind}, {text[:60] + '...' if len(text) > 60 else text!r})"


def _b64(text: str, what: str) -> bytes:
    try:
        return base64.b64decode(text)
    except (binascii.Error, ValueError):
        raise UnreadableImage(f"{what} is not valid base64") from None


def _is_file(text: str) -> bool:
    if not text or len(text) >= 4096:
        return False
    try:
        return Path(text).expanduser().is_file()
    except (OSError, ValueError, RuntimeError):  # a name too long, a NUL byte, an unknown ~user: not a file
        return False


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
