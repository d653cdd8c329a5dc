"""Image media facts in one place: format sniffing, MIME types, file extensions and data URIs.

Every layer that names an image format (the wire, the server, the run log's files, the panels) asks this module, so
the tables cannot drift. It imports nothing of the toolkit.
"""

from __future__ import annotations

import base64

# Magic numbers of the encoded formats the toolkit reads (WEBP, a RIFF container, is checked first).
_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"\x89PNG", "png"),
    (b"\xff\xd8\xff", "jpeg"),
    (b"GIF8", "gif"),
    (b"BM", "bmp"),
)

MIME_TYPES: dict[str, str] = {
    "png": "image/png",
    "jpeg": "image/jpeg",
    "webp": "image/webp",
    "gif": "image/gif",
    "bmp": "image/bmp",
}
EXTENSIONS: dict[str, str] = {"png": "png", "jpeg": "jpg", "webp": "webp", "gif": "gif", "bmp": "bmp"}

# The model page's outputFormat values and the sniffed format each produces.
OUTPUT_FORMATS: dict[str, str] = {"PNG": "png", "JPG": "jpeg", "WEBP": "webp"}


def sniff_format(data: bytes) -> str | None:
    """The image format of some bytes from their magic number ("png", "jpeg", ...), or None when not one we know."""
    if data[:4] == b"RIFF":
        return "webp"
    for magic, name in _MAGIC:
        if data.startswith(magic):
            return name
    return None


def mime_type(fmt: str | None) -> str:
    """The MIME type of a sniffed format; unknown formats are served as opaque bytes."""
    return MIME_TYPES.get(fmt or "", "application/octet-stream")


def extension(fmt: str | None, default: str = "bin") -> str:
    """The file extension (no dot) of a sniffed format."""
    return EXTENSIONS.get(fmt or "", default)


def output_format_mime(output_format: str) -> str:
    """The MIME type of a wire ``outputFormat`` (PNG, JPG, WEBP)."""
    return MIME_TYPES[OUTPUT_FORMATS[output_format.upper()]]


def output_format_extension(output_format: str) -> str:
    """The file extension of a wire ``outputFormat`` (PNG -> png, JPG -> jpg, WEBP -> webp)."""
    return EXTENSIONS[OUTPUT_FORMATS[output_format.upper()]]


def base64_text(data: bytes) -> str:
    """The bytes as standard base64 text (what Runware's ``imageBase64Data`` holds)."""
    return base64.b64encode(data).decode("ascii")


def data_uri(data: bytes, fmt: str | None = None) -> str:
    """A ``data:`` URI for encoded image bytes; the format is sniffed when not given (PNG when unknown)."""
    fmt = fmt or sniff_format(data) or "png"
    return f"data:{MIME_TYPES.get(fmt, 'image/png')};base64,{base64_text(data)}"


def decode_data_uri(uri: str) -> bytes:
    """The bytes a base64 ``data:`` URI holds (the header is not checked here; callers classify first)."""
    return base64.b64decode(uri.split(",", 1)[1])
