"""The run log's files under a bad day: a full disk says "disk full", image files are shareable (0644), and text in a
prompt cannot pose as a parameter in the PNG's text chunk."""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from hostile_server import png_bytes
from PIL import Image

from kandinsky_nb.errors import RunLogError
from kandinsky_nb.runlog.files import read_embedded_params
from kandinsky_nb.runlog.store import RunLog
from kandinsky_nb.types import GeneratedImage, Generation, ImageInferenceRequest, ImageInferenceResult


def generation(prompt: str = "a red fox in snow", colour: tuple[int, int, int] = (1, 2, 3), **fields) -> Generation:
    request = ImageInferenceRequest(positivePrompt=prompt, **fields)
    result = ImageInferenceResult(taskUUID=request.taskUUID, imageUUID=str(uuid.uuid4()), seed=7)
    return Generation(request, [GeneratedImage(result=result, data=png_bytes(colour=colour))], "runware", 0.1)


@pytest.fixture
def umask() -> Iterator:
    before = os.umask(0o022)
    yield lambda mask: os.umask(mask)
    os.umask(before)


def test_image_files_are_written_0644(tmp_path, umask):
    log = RunLog(tmp_path / "home")
    log.record_generation(generation())
    path = log.image_path(log.rows()[0])
    assert path is not None and path.stat().st_mode & 0o777 == 0o644
    umask(0o077)  # a user who asks for private files gets them
    log.record_generation(generation(colour=(4, 5, 6)))
    private = log.image_path(log.rows()[1])
    assert private is not None and private.stat().st_mode & 0o777 == 0o600
    assert not list((tmp_path / "home" / "images").rglob(".tmp-*"))
    log.close()


@pytest.mark.parametrize("newline", ["\n", "\r\n", "\r", "\u2028", "\x0b", "\x85"])
def test_line_breaks_in_a_prompt_cannot_inject_parameters(newline, tmp_path):
    injected = f"a red fox{newline}Negative prompt: blurry{newline}Steps: 99, Sampler: Evil, Seed: 1, Model: x"
    log = RunLog(tmp_path / "home")
    log.record_generation(generation(injected, steps=20, negativePrompt=f"dark{newline}Steps: 77"))
    path = log.image_path(log.rows()[0])
    with Image.open(path) as image:
        text = image.text["parameters"]
    lines = text.split("\n")
    assert len(lines) == 3, lines  # prompt, negative prompt, parameters: nothing more
    assert lines[0].startswith("a red fox") and lines[1].startswith("Negative prompt: dark")
    assert lines[2].startswith("Steps: 20,") and "Steps: 99" not in lines[2] and "Evil" not in lines[2]
    assert all(ch not in text for ch in ("\r", "\u2028", "\x0b", "\x85"))
    # the exact prompt is still there, in the JSON chunk
    params = read_embedded_params(path)
    assert params is not None and params["positivePrompt"] == injected
    log.close()


def test_a_full_database_says_disk_full_and_keeps_the_log_usable(tmp_path):
    log = RunLog(tmp_path / "home")
    pages = log._db.execute("PRAGMA page_count").fetchone()[0]
    # SQLite's own size cap: past it, writes fail with SQLITE_FULL exactly as on a full disk.
    log._db.execute(f"PRAGMA max_page_count = {pages + 1}")
    with pytest.raises(RunLogError) as caught:
        for index in range(200):
            log.record_submitted(
                ImageInferenceRequest(positivePrompt=f"{index} " + "x" * 3000), engine="runware", demo=False
            )
    message = str(caught.value)
    assert message.startswith("the disk is full") and "rollback" not in message.lower()
    assert "Another process" not in message  # not mistaken for a lock held too long
    log._db.execute("PRAGMA max_page_count = 1073741823")
    log.record_submitted(ImageInferenceRequest(positivePrompt="after the disk was freed"), engine="runware", demo=False)
    assert log.rows()[-1]["prompt"] == "after the disk was freed"
    log.close()


@pytest.fixture
def tiny_disk(tmp_path) -> Iterator[Path]:
    """A 512 KB tmpfs: a real full disk (needs root and mount; skipped where the sandbox forbids it)."""
    mount, umount = shutil.which("mount"), shutil.which("umount")
    folder = tmp_path / "tiny"
    folder.mkdir()
    if not (mount and umount and os.geteuid() == 0):
        pytest.skip("needs root and mount(8) for a real full disk")
    done = subprocess.run([mount, "-t", "tmpfs", "-o", "size=512k", "tmpfs", str(folder)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield folder
    finally:
        subprocess.run([umount, "-l", str(folder)], check=False)


def test_a_full_disk_says_disk_full_for_images_and_rows(tiny_disk):
    log = RunLog(tiny_disk / "home")
    log.record_generation(generation())  # fine while there is room
    with (tiny_disk / "filler").open("wb", buffering=0) as filler:  # then the disk fills up
        try:
            while True:
                filler.write(b"\0" * 4096)
        except OSError:
            pass
    for attempt in (generation(colour=(9, 9, 9)), generation(colour=(8, 8, 8))):
        with pytest.raises(RunLogError) as caught:
            log.record_generation(attempt)
        assert str(caught.value).startswith("the disk is full")
    with pytest.raises(RunLogError) as caught:
        log.record_submitted(ImageInferenceRequest(positivePrompt="x" * 30000), engine="runware", demo=False)
    assert str(caught.value).startswith("the disk is full") and "rollback" not in str(caught.value).lower()
    assert not list((tiny_disk / "home" / "images").rglob(".tmp-*"))  # no half-written temporary files
    (tiny_disk / "filler").unlink()
    log.record_generation(generation(colour=(7, 7, 7)))  # room again: the log works on
    assert log.rows()[-1]["status"] == "ok"
    log.close()
