"""The download-free scorers against values worked out by hand, and the errors that say what to pass instead."""

from __future__ import annotations

import io
import math
import sys

import numpy as np
import pytest
from PIL import Image, ImageFilter
from quality_testkit import noisy, png, scene

from kandinsky_nb.errors import ConfigurationError, MissingDependencyError
from kandinsky_nb.quality import (
    DOWNLOAD_FREE,
    PSNR,
    SSIM,
    Colourfulness,
    Sharpness,
    against,
    as_rgb,
    download_free_scorers,
    metric_label,
    scorer_named,
)


def test_ssim_is_one_for_the_same_picture_and_falls_as_noise_grows():
    reference = scene(3)
    scores = [SSIM().score(noisy(reference, amount, seed=1), reference=reference) for amount in (0, 5, 20, 60)]
    assert scores[0] == pytest.approx(1.0)
    assert scores == sorted(scores, reverse=True) and scores[-1] < 0.5


def test_psnr_of_a_known_error_and_of_the_reference_itself():
    reference = np.full((32, 32, 3), 100, dtype=np.uint8)
    shifted = reference + 10  # every pixel off by 10: MSE 100, PSNR = 10 log10(255² / 100)
    assert PSNR().score(shifted, reference=reference) == pytest.approx(10 * math.log10(255**2 / 100))
    assert PSNR().score(reference, reference=reference.copy()) == math.inf


def test_sharpness_is_the_variance_of_the_laplacian():
    flat = np.full((16, 16, 3), 90, dtype=np.uint8)
    assert Sharpness().score(flat) == 0.0
    # A one-pixel checkerboard of 0 and 255 grey: every inner Laplacian is ±4 × 255, so the variance is (4 × 255)².
    board = ((np.indices((16, 16)).sum(axis=0) % 2) * 255).astype(np.uint8)
    assert Sharpness().score(np.repeat(board[:, :, None], 3, axis=2)) == pytest.approx((4 * 255) ** 2, rel=1e-4)
    detailed = noisy(scene(2), 30, seed=2)
    blurred = np.asarray(Image.fromarray(detailed).filter(ImageFilter.GaussianBlur(2)))
    assert Sharpness().score(blurred) < Sharpness().score(detailed)
    assert Sharpness().score(np.zeros((2, 9, 3), dtype=np.uint8)) is None  # no inner pixel


def test_colourfulness_follows_hasler_and_suesstrunk():
    assert Colourfulness().score(np.full((8, 8, 3), 128, dtype=np.uint8)) == 0.0  # grey
    red = np.zeros((8, 8, 3), dtype=np.uint8)
    red[:, :, 0] = 255  # rg = 255 and yb = 127.5 everywhere: no spread, so 0.3 × |(255, 127.5)|
    assert Colourfulness().score(red) == pytest.approx(0.3 * math.hypot(255, 127.5))
    half = red.copy()
    half[:4] = 0  # rg and yb are (255, 127.5) on half the pixels, 0 on the rest: std = mean = half of each
    expected = math.hypot(127.5, 63.75) * 1.3
    assert Colourfulness().score(half) == pytest.approx(expected)


def test_comparison_scorers_need_a_reference_of_the_same_shape():
    image = scene(1)
    with pytest.raises(ConfigurationError, match=r"reference=None: ssim compares .* pass reference="):
        SSIM().score(image)
    with pytest.raises(ConfigurationError, match=r"reference shape=\(48, 32, 3\): psnr needs the image's shape"):
        PSNR().score(image, reference=scene(1, size=(32, 48)))


def test_scorers_by_name_and_what_each_is_computed_against():
    assert DOWNLOAD_FREE == ("ssim", "psnr", "sharpness", "colourfulness")
    assert [s.metric for s in download_free_scorers()] == list(DOWNLOAD_FREE)
    assert isinstance(scorer_named(" SSIM "), SSIM)
    with pytest.raises(ConfigurationError, match=r"scorer='lpips': not a download-free scorer; use one of ssim"):
        scorer_named("lpips")
    assert [against(m) for m in ("ssim", "psnr", "sharpness", "clip_score", "my_own")] == [
        "reference",
        "reference",
        "nothing",
        "prompt",
        "nothing",
    ]
    assert metric_label("psnr") == "dB PSNR" and metric_label("my_own") == "my_own"
    assert all(s.version for s in download_free_scorers())
    assert "random weights" not in repr(SSIM())


def test_images_from_bytes_files_pil_and_arrays(tmp_path):
    picture = scene(4)
    path = tmp_path / "picture.png"
    path.write_bytes(png(picture))
    for source in (png(picture), path, str(path), Image.fromarray(picture), picture):
        assert np.array_equal(as_rgb(source), picture)
    rgba = Image.fromarray(picture).convert("RGBA")
    assert as_rgb(rgba).shape == (48, 64, 3)
    greyscale = picture[:, :, 0]
    assert as_rgb(greyscale).shape == (48, 64, 3)
    opened = Image.open(io.BytesIO(png(picture)))
    as_rgb(opened)
    assert opened.size == (64, 48)  # the caller's image is left open and usable
    with pytest.raises(ConfigurationError, match=r"image=int: cannot be scored"):
        as_rgb(7)
    with pytest.raises(ConfigurationError, match=r"image shape=\(4, 4, 2\): not an image"):
        as_rgb(np.zeros((4, 4, 2), dtype=np.uint8))


def test_without_scikit_image_the_error_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "skimage", None)  # as if it were not installed
    with pytest.raises(MissingDependencyError, match=r"SSIM scoring needs the 'quality' extra") as caught:
        SSIM()
    assert caught.value.extra == "quality"
    assert "pip install 'kandinsky-nb[quality]'" in str(caught.value)
    assert Sharpness().score(scene(1)) > 0  # numpy-only scorers still work
