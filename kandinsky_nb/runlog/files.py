"""Image files: written once, named by their sha256, with the request's parameters embedded in the file.

The parameters go in without re-encoding the pixels (a JPEG or lossy WEBP re-saved through Pillow loses quality):

- PNG: an ``iTXt`` chunk ``k5nb_params`` (JSON) and a ``tEXt`` chunk ``parameters`` (A1111-style text, which
  existing viewers read), inserted after ``IHDR``;
- JPEG: a comment (``COM``) segment holding the same JSON, inserted after the start-of-image marker;
- WEBP: an ``XMP `` chunk whose ``k5nb:params`` attribute holds the JSON (a simple WEBP is upgraded to the extended
  ``VP8X`` layout that XMP needs).

:func:`read_embedded_params` reads the JSON back from any of the three, so the image files alone can rebuild the log.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import struct
import uuid
import zlib
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape, unescape

from .._media import extension, sniff_format
from ..errors import RunLogError

__all__ = ["embed_params", "infotext", "read_embedded_params", "write_atomically", "write_image_once"]

PARAMS_KEY = "k5nb_params"
_XMP_NS = "https://github.com/kandinsky-nb/ns/1.0/"
_XML_ATTR = {'"': "&quot;", "\n": "&#10;", "\r": "&#13;", "\t": "&#9;"}


# Image files are for sharing: readable by everyone, writable by the owner (the umask may narrow this further).
IMAGE_FILE_MODE = 0o644
# Line breaks (CR, LF and Unicode's own) and other control characters: the A1111 text is line-based, so one of these
# in a prompt would start a line of its own, and readers would take "Steps: 99" typed in a prompt as a parameter.
_LINE_BREAKING = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]+")


def _one_line(value: Any) -> str:
    return _LINE_BREAKING.sub(" ", str(value))


def infotext(params: dict[str, Any]) -> str:
    """The A1111 ``parameters`` text: prompt, negative prompt, then ``Key: value`` pairs. Every value is kept on one
    line (line breaks become spaces), so text in a prompt can never pose as another field; the exact prompt is in
    the JSON chunk."""
    lines = [_one_line(params.get("positivePrompt", ""))]
    if params.get("negativePrompt"):
        lines.append(f"Negative prompt: {_one_line(params['negativePrompt'])}")
    pairs = [
        ("Steps", params.get("steps")),
        ("Sampler", params.get("scheduler")),
        ("CFG scale", params.get("CFGScale")),
        ("Seed", params.get("seed")),
        ("Size", f"{params.get('width')}x{params.get('height')}"),
        ("Model", params.get("model")),
    ]
    lines.append(", ".join(f"{key}: {_one_line(value)}" for key, value in pairs if value is not None))
    return "\n".join(lines)


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def _embed_png(data: bytes, text: str, params: dict[str, Any]) -> bytes:
    ihdr_end = 8 + 8 + struct.unpack(">I", data[8:12])[0] + 4
    itxt = _png_chunk(b"iTXt", PARAMS_KEY.encode() + b"\0\0\0\0\0" + text.encode("utf-8"))
    # tEXt is Latin-1 only; characters outside it become '?' there (the iTXt JSON keeps them exactly).
    a1111 = _png_chunk(b"tEXt", b"parameters\0" + infotext(params).encode("latin-1", "replace"))
    return data[:ihdr_end] + itxt + a1111 + data[ihdr_end:]


def _embed_jpeg(data: bytes, text: str) -> bytes:
    payload = (PARAMS_KEY + ":" + text).encode("utf-8")
    if len(payload) > 65533:  # a JPEG segment holds at most 65533 bytes; prompts that long keep only the log row
        payload = (PARAMS_KEY + ":" + json.dumps({"truncated": True})).encode()
    return data[:2] + b"\xff\xfe" + struct.pack(">H", len(payload) + 2) + payload + data[2:]


def _riff_chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    chunks, offset = [], 12
    while offset + 8 <= len(data):
        kind, size = data[offset : offset + 4], struct.unpack("<I", data[offset + 4 : offset + 8])[0]
        chunks.append((kind, data[offset + 8 : offset + 8 + size]))
        offset += 8 + size + (size & 1)
    return chunks


def _riff(chunks: list[tuple[bytes, bytes]]) -> bytes:
    body = b"WEBP" + b"".join(k + struct.pack("<I", len(v)) + v + (b"\0" if len(v) & 1 else b"") for k, v in chunks)
    return b"RIFF" + struct.pack("<I", len(body)) + body


def _embed_webp(data: bytes, text: str) -> bytes:
    import io

    from PIL import Image

    chunks = [(k, v) for k, v in _riff_chunks(data) if k != b"XMP "]
    if chunks[0][0] != b"VP8X":
        width, height = Image.open(io.BytesIO(data)).size
        has_alpha = chunks[0][0] == b"VP8L" and bool(chunks[0][1][4] & 0x10) if len(chunks[0][1]) > 4 else False
        flags = 0x10 if has_alpha else 0
        vp8x = bytes([flags, 0, 0, 0]) + (width - 1).to_bytes(3, "little") + (height - 1).to_bytes(3, "little")
        chunks.insert(0, (b"VP8X", vp8x))
    vp8x = bytearray(chunks[0][1])
    vp8x[0] |= 0x04  # the XMP flag
    chunks[0] = (b"VP8X", bytes(vp8x))
    xmp = (
        '<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
        f'<rdf:Description rdf:about="" xmlns:k5nb="{_XMP_NS}" k5nb:params="{escape(text, _XML_ATTR)}"/>'
        "</rdf:RDF></x:xmpmeta>"
    )
    chunks.append((b"XMP ", xmp.encode("utf-8")))
    return _riff(chunks)


def embed_params(data: bytes, params: dict[str, Any]) -> bytes:
    """The image bytes with ``params`` embedded as JSON; formats we cannot annotate are returned unchanged."""
    text = json.dumps(params, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
    kind = sniff_format(data)
    if kind == "png":
        return _embed_png(data, text, params)
    if kind == "jpeg":
        return _embed_jpeg(data, text)
    if kind == "webp":
        return _embed_webp(data, text)
    return data


def read_embedded_params(source: str | os.PathLike[str] | bytes) -> dict[str, Any] | None:
    """The parameters embedded by :func:`embed_params`, or None when the file has none."""
    data = source if isinstance(source, bytes) else Path(source).read_bytes()
    kind = sniff_format(data)
    text: str | None = None
    if kind == "png":
        offset = 8
        while offset + 8 <= len(data):
            size = struct.unpack(">I", data[offset : offset + 4])[0]
            chunk, body = data[offset + 4 : offset + 8], data[offset + 8 : offset + 8 + size]
            if chunk == b"iTXt" and body.startswith(PARAMS_KEY.encode() + b"\0"):
                text = body.split(b"\0", 5)[-1].decode("utf-8")
                break
            offset += 12 + size
    elif kind == "jpeg":
        marker = b"\xff\xfe"
        at = data.find(marker)
        while at != -1:
            size = struct.unpack(">H", data[at + 2 : at + 4])[0]
            body = data[at + 4 : at + 2 + size]
            if body.startswith(PARAMS_KEY.encode() + b":"):
                text = body[len(PARAMS_KEY) + 1 :].decode("utf-8")
                break
            at = data.find(marker, at + 2)
    elif kind == "webp":
        import re

        for chunk, body in _riff_chunks(data):
            if chunk == b"XMP ":
                match = re.search(r'k5nb:params="([^"]*)"', body.decode("utf-8"))
                if match:
                    text = unescape(match.group(1), {v: k for k, v in _XML_ATTR.items()})
    return json.loads(text) if text else None


def write_image_once(images_dir: Path, data: bytes) -> tuple[Path, str]:
    """Store ``data`` at ``images_dir/ab/<sha256>.<ext>`` unless it is already there; returns (path, sha256).

    The file appears atomically (written to a temporary name, then renamed), so a crash never leaves half an image
    under a real name, and two writers of the same bytes end with one file. It is created with mode 0644 (less what
    the umask takes away), like any file a program saves, not tempfile's private 0600. A write that fails (a full
    disk, a read-only folder) raises :class:`RunLogError` saying which, and leaves no temporary file behind.
    """
    digest = hashlib.sha256(data).hexdigest()
    path = images_dir / digest[:2] / f"{digest}.{extension(sniff_format(data))}"
    if path.exists():
        return path, digest
    try:
        write_atomically(path, data)
    except OSError as exc:
        raise RunLogError(_write_failure(path.parent, exc)) from exc
    return path, digest


def write_atomically(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary name in the same folder and a rename, creating the folder.

    Readers see the whole file or none, and concurrent writers of the same bytes end with one file (the last
    rename wins). The file gets mode 0644 less the umask. An :class:`OSError` propagates, with no temporary file left.
    """
    temporary = path.parent / f".tmp-{uuid.uuid4().hex}"
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, IMAGE_FILE_MODE)
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(data)
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def _write_failure(folder: Path, exc: OSError) -> str:
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return (
            f"the disk is full: cannot write an image file to {folder} ({exc.strerror}). Free space on that disk, or "
            "use a home folder on another one (Session(home=...) or KANDINSKY_NB_HOME), and run again."
        )
    return (
        f"cannot write an image file to {folder}: {exc.strerror or exc}. Check that the folder is writable, or use "
        "another home folder (Session(home=...) or KANDINSKY_NB_HOME)."
    )
