"""Demo weights (offline, idempotent, never trusted half-built), weight resolution, and the generate/weights CLI."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from kandinsky_nb import spec
from kandinsky_nb.backends.local import (
    LocalBackend,
    build_demo_weights,
    demo_weights_ready,
    resolve_weights,
    scaled_size,
)
from kandinsky_nb.backends.local.demo_weights import MARKER
from kandinsky_nb.cli import main
from kandinsky_nb.types import ImageInferenceRequest

pytestmark = pytest.mark.local


def test_demo_weights_folder_is_complete_and_reused(demo_weights):
    assert demo_weights_ready(demo_weights)
    marker = json.loads((demo_weights / MARKER).read_text())
    assert "noise" in marker["what"]
    before = (demo_weights / "t2i" / "model_index.json").stat().st_mtime_ns
    assert build_demo_weights(demo_weights) == demo_weights
    assert (demo_weights / "t2i" / "model_index.json").stat().st_mtime_ns == before  # reused, not rebuilt


def test_a_half_built_folder_is_rebuilt_not_trusted(tmp_path, demo_weights):
    import shutil

    folder = tmp_path / "weights"
    shutil.copytree(demo_weights, folder)
    (folder / MARKER).unlink()  # as if the build had crashed before its last write
    shutil.rmtree(folder / "i2i" / "transformer")
    assert not demo_weights_ready(folder)
    assert build_demo_weights(folder) == folder
    assert demo_weights_ready(folder) and (folder / "i2i" / "transformer").is_dir()
    assert not list(folder.glob(".staging-*"))


def test_weights_resolution(tmp_path, monkeypatch, demo_weights):
    assert resolve_weights(None).t2i == spec.LOCAL_T2I_CHECKPOINT
    assert resolve_weights(None).i2i == spec.LOCAL_I2I_CHECKPOINT
    monkeypatch.setenv("KANDINSKY_NB_WEIGHTS", str(demo_weights))
    located = resolve_weights(None)
    assert located.demo and located.t2i == str(demo_weights / "t2i")
    assert resolve_weights("someone/a-k5-finetune").t2i == "someone/a-k5-finetune"
    assert not resolve_weights(demo_weights / "t2i").demo  # one pipeline folder: real weights path


def test_scaled_sizes_keep_every_aspect_ratio_at_the_demo_scale():
    for size in spec.SIZES:
        width, height = scaled_size(size.width, size.height, 1 / 8)
        assert (width % 16, height % 16) == (0, 0)
        assert width / height == pytest.approx(size.aspect)
    assert scaled_size(1024, 1024, 1.0) == (1024, 1024)


def test_session_check_refuses_before_running(demo_backend):
    from kandinsky_nb.errors import UnsupportedByEngineError

    with pytest.raises(UnsupportedByEngineError):
        demo_backend.check(ImageInferenceRequest(positivePrompt="a fox", scheduler="PNDM"))
    demo_backend.check(ImageInferenceRequest(positivePrompt="a fox", scheduler="Euler a"))


def test_closed_backend_says_so(demo_weights):
    from kandinsky_nb.errors import BackendError

    backend = LocalBackend.from_demo_weights(demo_weights)
    backend.close()
    with pytest.raises(BackendError, match="closed"):
        backend.generate(ImageInferenceRequest(positivePrompt="a fox", steps=10))


def test_cli_weights_build_prints_where(tmp_path):
    result = CliRunner().invoke(main, ["weights", "build", "--dir", str(tmp_path / "w")])
    assert result.exit_code == 0, result.output
    assert str(tmp_path / "w") in result.output
    assert demo_weights_ready(tmp_path / "w")


def test_cli_generate_writes_files_offline(tmp_path, demo_weights):
    out = tmp_path / "out"
    args = ["generate", "a red fox in snow", "--weights", str(demo_weights), "--seed", "5", "--n", "2"]
    args += ["--steps", "10", "--width", "1280", "--height", "768", "--format", "WEBP", "--out", str(out)]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    paths = sorted(out.glob("*.webp"))
    assert len(paths) == 2
    assert all(str(path) in result.output for path in paths)
    assert re.search(r"seed 5\b", result.output) and re.search(r"seed 6\b", result.output)
    assert "DEMO WEIGHTS: images are noise" in result.output
    images = [np.asarray(Image.open(path)) for path in paths]
    assert images[0].shape == (96, 160, 3) and not np.array_equal(images[0], images[1])


def test_cli_generate_refusal_is_a_clean_error(tmp_path, demo_weights):
    args = ["generate", "a fox", "--weights", str(demo_weights), "--scheduler", "DDIM", "--out", str(tmp_path)]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 1
    assert "DDIM" in result.output and "Euler" in result.output and "Traceback" not in result.output


@pytest.mark.parametrize("missing", ["torch", "diffusers"])
def test_missing_local_extra_names_the_extra(missing, tmp_path):
    """Without torch or diffusers installed (simulated in a fresh interpreter), using the engine says which extra to
    install instead of failing with a bare ImportError."""
    import subprocess
    import sys

    code = f"""
import sys
sys.modules[{missing!r}] = None  # what an interpreter without the package sees on import
from kandinsky_nb.backends.local import LocalBackend, build_demo_weights
from kandinsky_nb.errors import MissingDependencyError
from kandinsky_nb.types import ImageInferenceRequest
for attempt in (lambda: LocalBackend("someone/weights").generate(ImageInferenceRequest(positivePrompt="a fox")),
                lambda: build_demo_weights(sys.argv[1])):
    try:
        attempt()
    except MissingDependencyError as exc:
        assert exc.extra == "local" and {missing!r} in str(exc), exc
        print("ok", exc)
    else:
        raise SystemExit("no MissingDependencyError")
"""
    result = subprocess.run([sys.executable, "-c", code, str(tmp_path / "w")], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("ok ") == 2
    assert "pip install 'kandinsky-nb[local]'" in result.stdout


def test_a_plain_diffusers_folder_runs_the_real_weights_path(demo_weights):
    """One pipeline folder (what anyone with downloaded weights has) goes through the real loading path: not demo,
    full-size unless scaled; here scaled down so the tiny model stays quick."""
    backend = LocalBackend(demo_weights / "t2i", demo_scale=1 / 8, device="cpu")
    try:
        assert backend.demo is False
        gen = backend.generate(ImageInferenceRequest(positivePrompt="a fox", seed=2, steps=10))
        assert gen.demo is False and gen.details["demo"] is False
        assert gen.details["checkpoint"] == str(demo_weights / "t2i") and gen.details["dtype"] == "float32"
        assert gen.images[0].to_pil().size == (128, 128)
    finally:
        backend.close()


def test_a_missing_weights_folder_is_a_configuration_error(tmp_path):
    from kandinsky_nb.errors import ConfigurationError

    with pytest.raises(ConfigurationError, match="is not a folder"):
        LocalBackend(tmp_path / "nowhere")
    with pytest.raises(ConfigurationError, match="kandinsky-nb weights build"):
        LocalBackend(str(tmp_path / "nowhere"))


def test_two_builders_at_once_get_one_complete_folder(tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    folder = tmp_path / "shared-weights"
    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(build_demo_weights, [folder, folder]))
    assert results == [folder, folder]
    assert demo_weights_ready(folder) and not list(folder.glob(".staging-*"))


def test_offload_needs_a_gpu(demo_weights):
    from kandinsky_nb.errors import ConfigurationError

    with pytest.raises(ConfigurationError, match="device='cuda'"):
        LocalBackend(demo_weights / "t2i", device="cpu", offload=True)
