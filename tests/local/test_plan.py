"""The local engine's pure planner: decisions from the request alone, with no torch, no files and no pipelines."""

from __future__ import annotations

import base64
import io
import subprocess
import sys

import pytest
from PIL import Image

from kandinsky_nb import _media, spec
from kandinsky_nb.backends.local.plan import (
    DEMO_SCALE,
    image_seeds,
    pipeline_call,
    plan_request,
    rendered_sizes,
    result_fields,
)
from kandinsky_nb.errors import ConfigurationError
from kandinsky_nb.types import ImageInferenceRequest


def png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (32, 32), (120, 60, 30)).save(buffer, format="PNG")
    return buffer.getvalue()


def test_the_planner_runs_without_torch_or_diffusers():
    """A fresh interpreter where torch and diffusers cannot be imported still plans every mode."""
    code = """
import sys
sys.modules["torch"] = sys.modules["diffusers"] = None
from kandinsky_nb.backends.local.plan import plan_request
from kandinsky_nb.types import ImageInferenceRequest
modes = [plan_request(ImageInferenceRequest(positivePrompt="a fox", **extra)).mode
         for extra in ({}, {"referenceImages": [sys.argv[1]]}, {"seedImage": sys.argv[1], "strength": 0.5})]
print(",".join(modes))
"""
    uri = _media.data_uri(png())
    result = subprocess.run([sys.executable, "-c", code, uri], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "text,edit,img2img"


def test_modes_pick_their_pipeline_and_img2img_starts_where_strength_says():
    assert plan_request(ImageInferenceRequest(positivePrompt="a fox")).kind == "t2i"
    edit = plan_request(ImageInferenceRequest(positivePrompt="make it blue", referenceImages=[png()]))
    assert (edit.mode, edit.kind) == ("edit", "i2i")
    img2img = plan_request(ImageInferenceRequest(positivePrompt="a fox", seedImage=png(), strength=0.3, steps=10))
    # strength is the fraction of the schedule that runs: 3 of 10 steps, so it starts at step 7
    assert (img2img.mode, img2img.kind, img2img.start_step, img2img.strength) == ("img2img", "t2i", 7, 0.3)


def test_pipeline_call_renders_the_scaled_size_and_says_every_setting():
    request = ImageInferenceRequest(
        positivePrompt="a fox", negativePrompt="blurry", width=1280, height=768, steps=12, CFGScale=4
    )
    assert pipeline_call(request, DEMO_SCALE) == {
        "prompt": "a fox",
        "negative_prompt": "blurry",
        "height": 96,
        "width": 160,
        "num_inference_steps": 12,
        "guidance_scale": 4.0,
    }
    assert len(rendered_sizes(1.0)) == len(spec.SIZES)


def test_seeds_are_consecutive_and_wrap_to_a_valid_seed():
    assert image_seeds(7, 3) == [7, 8, 9]
    assert image_seeds(spec.SEED_MAX, 2) == [spec.SEED_MAX, 0]
    drawn = image_seeds(None, 2)
    assert 0 <= drawn[0] <= spec.RANDOM_SEED_MAX and drawn[1] == (drawn[0] + 1) % (spec.SEED_MAX + 1)


@pytest.mark.parametrize("output_format", ["PNG", "JPG", "WEBP"])
def test_result_fields_follow_the_output_type(output_format):
    data = b"not decoded here"
    uri = result_fields("dataURI", output_format, data)["imageDataURI"]
    assert uri.startswith(f"data:{_media.output_format_mime(output_format)};base64,")
    assert _media.decode_data_uri(uri) == data
    assert base64.b64decode(result_fields("base64Data", output_format, data)["imageBase64Data"]) == data
    assert result_fields("URL", output_format, data) == {}


@pytest.mark.parametrize("scale", [0, -0.5, 1.5])
def test_a_scale_outside_zero_to_one_is_a_configuration_error(scale, tmp_path):
    from kandinsky_nb.backends.local import LocalBackend

    # A hub id: nothing is loaded or downloaded when the engine is created.
    with pytest.raises(ConfigurationError, match=rf"demo_scale={scale!r}.*\(0, 1\]"):
        LocalBackend("someone/weights", demo_scale=scale)
