"""The Gallery's thumbnail cache: made once per image content beside the images, read (not the full image) on every
later opening, aspect kept, an unreadable image shown as the placeholder, and safe with several writers at once."""

from __future__ import annotations

import io
import threading
import uuid
from pathlib import Path

import pytest
from PIL import Image

from kandinsky_nb.runlog import RunLog
from kandinsky_nb.runlog.thumbs import cached_thumbnail, thumbnail_path
from kandinsky_nb.types import GeneratedImage, Generation, ImageInferenceRequest, ImageInferenceResult
from kandinsky_nb.ui import Gallery
from kandinsky_nb.ui.gallery import PLACEHOLDER_GREY

TILE = 160  # the Gallery's tile side


def encoded(size: tuple[int, int], seed: int) -> bytes:
    """A PNG of ``size`` whose content depends on ``seed`` (a rotated gradient), so every seed hashes apart."""
    buffer = io.BytesIO()
    Image.linear_gradient("L").rotate(seed * 13).resize(size).convert("RGB").save(buffer, format="PNG")
    return buffer.getvalue()


def log_images(log: RunLog, sizes: list[tuple[int, int]]) -> None:
    """One ok run per size, each with its own image of that size (real encoded PNGs, no engine)."""
    for seed, size in enumerate(sizes, start=1):
        request = ImageInferenceRequest(positivePrompt="a red fox in snow", seed=seed)
        result = ImageInferenceResult(taskUUID=request.taskUUID, imageUUID=str(uuid.uuid4()), seed=seed, cost=0.001)
        log.record_generation(
            Generation(request, [GeneratedImage(result=result, data=encoded(size, seed))], "runware", 0.01)
        )


def tiles(gallery: Gallery) -> dict[int, bytes]:
    """The image bytes on screen, by row id."""
    return {
        rid: tile.children[0].value for rid, tile in zip(gallery.state.shown_ids, gallery.grid.children, strict=True)
    }


def size_of(data: bytes) -> tuple[int, int]:
    with Image.open(io.BytesIO(data)) as image:
        return image.size


def is_placeholder(data: bytes) -> bool:
    with Image.open(io.BytesIO(data)) as image:
        return image.size == (TILE, TILE) and image.convert("RGB").getcolors() == [(TILE * TILE, PLACEHOLDER_GREY)]


def test_the_second_opening_reads_cached_thumbnails_not_the_full_images(tmp_path):
    home = tmp_path / "home"
    log = RunLog(home)
    log_images(log, [(640, 480), (512, 512), (480, 640)])
    first = tiles(Gallery(log))
    frame = log.df
    log.close()
    assert len(first) == 3 and not any(is_placeholder(data) for data in first.values())
    for sha in frame["image_sha256"]:  # one thumbnail per image content, beside the images
        assert thumbnail_path(home / "thumbs", sha, TILE, "jpeg").is_file()

    # Without the full images, only the cache can draw the tiles: any decode of a full image would fail here.
    for path in frame["image_path"]:
        Path(path).unlink()
    log = RunLog(home)
    try:
        assert tiles(Gallery(log)) == first
    finally:
        log.close()


@pytest.mark.parametrize(("size", "expected"), [((640, 320), (160, 80)), ((300, 600), (80, 160)), ((64, 48), (64, 48))])
def test_a_thumbnail_keeps_the_image_aspect_and_is_never_upscaled(tmp_path, size, expected):
    log = RunLog(tmp_path / "home")
    try:
        log_images(log, [size])
        [made] = tiles(Gallery(log)).values()
        [cached] = tiles(Gallery(log)).values()  # the second opening, from the cache
    finally:
        log.close()
    assert size_of(made) == size_of(cached) == expected


@pytest.mark.parametrize("damage", ["missing", "not an image", "truncated"])
def test_an_unreadable_image_gives_the_placeholder_not_an_error(tmp_path, damage):
    log = RunLog(tmp_path / "home")
    try:
        log_images(log, [(320, 240), (320, 240)])
        frame = log.df.sort_values("id")
        bad = Path(frame["image_path"].iloc[0])
        if damage == "missing":
            bad.unlink()
        elif damage == "not an image":
            bad.write_bytes(b"this is not a picture")
        else:
            bad.write_bytes(bad.read_bytes()[:200])
        gallery = Gallery(log)
        shown = tiles(gallery)
    finally:
        log.close()
    bad_id, good_id = (int(i) for i in frame["id"])
    assert is_placeholder(shown[bad_id])
    assert size_of(shown[good_id]) == (160, 120) and not is_placeholder(shown[good_id])
    assert gallery.errors.last is None and gallery.errors.widget.value == ""
    # Nothing is cached for an image that could not be read: a repaired file gets its real thumbnail.
    assert not any((tmp_path / "home" / "thumbs").rglob(f"{frame['image_sha256'].iloc[0]}.*"))


def test_concurrent_writers_leave_one_whole_thumbnail_and_no_temporary_files(tmp_path):
    images = tmp_path / "home" / "images" / "ab"
    images.mkdir(parents=True)
    data = encoded((800, 600), 3)
    sha = "ab" + "0" * 62
    path = images / f"{sha}.png"
    path.write_bytes(data)
    results: list[tuple[bytes, str]] = []
    start = threading.Barrier(8)

    def make() -> None:
        start.wait()
        results.append(cached_thumbnail(path, sha, TILE))

    threads = [threading.Thread(target=make) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 8 and len(set(results)) == 1
    files = [p for p in (tmp_path / "home" / "thumbs").rglob("*") if p.is_file()]
    assert files == [thumbnail_path(tmp_path / "home" / "thumbs", sha, TILE, "jpeg")]
    assert files[0].read_bytes() == results[0][0]


def test_a_cache_that_cannot_be_written_still_gives_the_thumbnail(tmp_path):
    images = tmp_path / "home" / "images" / "ab"
    images.mkdir(parents=True)
    sha = "ab" + "1" * 62
    path = images / f"{sha}.png"
    path.write_bytes(encoded((400, 200), 5))
    blocked = tmp_path / "home" / "thumbs"
    blocked.write_bytes(b"")  # a file where the cache folder would go: no folder can be made under it
    data, fmt = cached_thumbnail(path, sha, TILE)
    assert fmt == "jpeg" and size_of(data) == (160, 80)


def test_a_damaged_cached_thumbnail_is_made_again(tmp_path):
    images = tmp_path / "home" / "images" / "ab"
    images.mkdir(parents=True)
    sha = "ab" + "2" * 62
    path = images / f"{sha}.png"
    path.write_bytes(encoded((400, 200), 6))
    cached = thumbnail_path(tmp_path / "home" / "thumbs", sha, TILE, "jpeg")
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"half a fi")
    data, fmt = cached_thumbnail(path, sha, TILE)
    assert fmt == "jpeg" and size_of(data) == (160, 80)
    assert cached.read_bytes() == data


def test_an_image_outside_a_run_log_or_without_a_hash_is_not_cached(tmp_path):
    loose = tmp_path / "pictures" / "fox.png"
    loose.parent.mkdir()
    loose.write_bytes(encoded((300, 300), 7))
    assert size_of(cached_thumbnail(loose, "ab" + "3" * 62, TILE)[0]) == (160, 160)
    in_log = tmp_path / "home" / "images" / "ab" / "fox.png"
    in_log.parent.mkdir(parents=True)
    in_log.write_bytes(loose.read_bytes())
    assert size_of(cached_thumbnail(in_log, "../../etc/passwd", TILE)[0]) == (160, 160)
    assert not (tmp_path / "thumbs").exists()
    assert not (tmp_path / "home" / "thumbs").exists()
