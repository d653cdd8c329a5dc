"""The local engine honours (or clearly refuses) every knob of the request: conditioning, schedulers, LoRA,
acceleratorOptions and image inputs. Demo weights: their modulation is randomised, so conditioning matters."""

from __future__ import annotations

import io
import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from kandinsky_nb import spec
from kandinsky_nb.backends.local import LOCAL_SCHEDULERS, supported_local_schedulers
from kandinsky_nb.errors import UnsupportedByEngineError
from kandinsky_nb.types import ImageInferenceRequest

pytestmark = pytest.mark.local

STEPS = int(spec.LIMITS["steps"].minimum)
BASE = {"positivePrompt": "a red fox in snow", "seed": 7, "steps": STEPS, "outputFormat": "PNG"}


def run(backend, **changes) -> np.ndarray:
    gen = backend.generate(ImageInferenceRequest(**{**BASE, **changes}))
    return np.asarray(gen.images[0].to_pil().convert("RGB"), dtype=np.int16)


def png(color=(200, 30, 30), size=(96, 64)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def baseline(demo_backend) -> np.ndarray:
    return run(demo_backend)


# -- conditioning ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "change",
    [
        {"positivePrompt": "a blue circle on a white background"},
        {"negativePrompt": "blurry, low quality"},
        {"CFGScale": 3.5},
        {"seed": 8},
        {"steps": STEPS + 2},
        {"scheduler": "UniPC"},
    ],
    ids=lambda change: next(iter(change)),
)
def test_each_setting_changes_the_image(demo_backend, baseline, change):
    assert not np.array_equal(run(demo_backend, **change), baseline)


# -- schedulers -----------------------------------------------------------------------------------------------------
def test_scheduler_table_covers_the_model_page_and_needs_no_torch():
    assert set(LOCAL_SCHEDULERS) == set(spec.SCHEDULERS)
    code = (
        "import sys, kandinsky_nb.backends.local as local; "
        "assert 'torch' not in sys.modules and 'diffusers' not in sys.modules; "
        "print(','.join(local.supported_local_schedulers()))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out.split(",") == list(supported_local_schedulers())


@pytest.mark.parametrize("name", spec.SCHEDULERS)
def test_every_scheduler_name_runs_finite_or_is_refused_with_the_reason(demo_backend, name):
    choice = LOCAL_SCHEDULERS[name]
    if not choice.supported:
        with pytest.raises(UnsupportedByEngineError) as refused:
            run(demo_backend, scheduler=name)
        error = refused.value
        assert (error.field, error.value, error.engine) == ("scheduler", name, "local")
        assert error.reason == choice.note and error.instead == choice.instead
        assert choice.note in str(error) and "instead" in str(error)
        return
    gen = demo_backend.generate(ImageInferenceRequest(**{**BASE, "scheduler": name}))
    scheduler = gen.details["scheduler"]
    assert scheduler["class"] == choice.scheduler_class
    assert scheduler["remapped"] == choice.remapped
    if "use_flow_sigmas" in choice.config:
        assert scheduler["config"]["use_flow_sigmas"] and scheduler["config"]["prediction_type"] == "flow_prediction"
    image = np.asarray(gen.images[0].to_pil(), dtype=np.float32)
    # NaN latents decode to a constant (black) image; a finite run gives a varied one
    assert image.std() > 1.0


@pytest.mark.parametrize("name", ["Euler a", "DPM++ 2M SDE Karras"])
def test_stochastic_samplers_reproduce_with_the_same_seed(demo_backend, name):
    assert LOCAL_SCHEDULERS[name].stochastic
    first, again, other = (
        run(demo_backend, scheduler=name),
        run(demo_backend, scheduler=name),
        run(demo_backend, scheduler=name, seed=8),
    )
    assert np.array_equal(first, again)
    assert not np.array_equal(first, other)


def test_seeding_does_not_disturb_the_callers_global_rng(demo_backend):
    import torch

    torch.manual_seed(1234)
    expected = torch.rand(3)
    torch.manual_seed(1234)
    run(demo_backend, scheduler="Euler a")
    assert torch.equal(torch.rand(3), expected)


# -- LoRA -----------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def lora_files(demo_weights, tmp_path_factory):
    """A random LoRA on the demo transformer, saved twice: the diffusers way (``transformer.`` prefixed keys plus
    metadata) and as a bare PEFT state dict without the prefix (how the official Kandinsky LoRAs look)."""
    import torch
    from diffusers import Kandinsky5T2IPipeline, Kandinsky5Transformer3DModel
    from peft import LoraConfig, get_peft_model_state_dict
    from safetensors.torch import save_file

    transformer = Kandinsky5Transformer3DModel.from_pretrained(demo_weights / "t2i", subfolder="transformer")
    torch.manual_seed(0)
    transformer.add_adapter(
        LoraConfig(
            r=4,
            lora_alpha=4,
            init_lora_weights=False,
            target_modules=r".*(self_attention|cross_attention)\.(to_query|to_key|to_value|out_layer)",
        )
    )
    state_dict = get_peft_model_state_dict(transformer)
    folder = tmp_path_factory.mktemp("lora") / "diffusers-lora"
    Kandinsky5T2IPipeline.save_lora_weights(folder, transformer_lora_layers=state_dict)
    bare = folder.parent / "bare.safetensors"
    save_file({key: value.contiguous() for key, value in state_dict.items()}, str(bare))
    assert not any(key.startswith("transformer.") for key in state_dict)
    # PEFT's own folder layout: adapter_config.json + adapter_model.safetensors with base_model.model. keys
    peft_folder = folder.parent / "peft-lora"
    peft_folder.mkdir()
    save_file(
        {f"base_model.model.{key}": value.contiguous() for key, value in state_dict.items()},
        str(peft_folder / "adapter_model.safetensors"),
    )
    config = transformer.peft_config["default"].to_dict()
    (peft_folder / "adapter_config.json").write_text(
        json.dumps({k: sorted(v) if isinstance(v, set) else v for k, v in config.items()}, default=str)
    )
    return folder, bare, peft_folder


def test_lora_weight_zero_is_no_lora_and_nonzero_changes_the_image(demo_backend, baseline, lora_files):
    folder, _, _ = lora_files
    assert np.array_equal(run(demo_backend, lora=[{"model": str(folder), "weight": 0}]), baseline)
    with_lora = run(demo_backend, lora=[{"model": str(folder), "weight": 1}])
    assert not np.array_equal(with_lora, baseline)
    half = run(demo_backend, lora=[{"model": str(folder), "weight": 0.5}])
    assert not np.array_equal(half, with_lora)
    # the LoRA is gone again afterwards
    assert np.array_equal(run(demo_backend), baseline)


def test_lora_without_the_transformer_prefix_is_applied(demo_backend, baseline, lora_files):
    folder, bare, peft_folder = lora_files
    prefixed = run(demo_backend, lora=[{"model": str(folder)}])
    unprefixed = run(demo_backend, lora=[{"model": str(bare), "transformer": "both"}])
    peft_layout = run(demo_backend, lora=[{"model": str(peft_folder)}])
    assert not np.array_equal(unprefixed, baseline)
    assert np.abs(unprefixed - prefixed).max() <= 1
    assert np.abs(peft_layout - prefixed).max() <= 1


def test_lora_alpha_from_a_peft_config_is_honoured(demo_backend, lora_files, tmp_path):
    import shutil

    folder, _, peft_folder = lora_files
    doubled = tmp_path / "alpha8"
    shutil.copytree(peft_folder, doubled)
    config = json.loads((doubled / "adapter_config.json").read_text())
    (doubled / "adapter_config.json").write_text(json.dumps({**config, "lora_alpha": 8}))  # scale alpha/r = 2
    assert (
        np.abs(
            run(demo_backend, lora=[{"model": str(doubled)}])
            - run(demo_backend, lora=[{"model": str(folder), "weight": 2}])
        ).max()
        <= 1
    )


def test_lora_refusals_name_the_field_and_the_fix(demo_backend, lora_files, tmp_path):
    folder, _, _ = lora_files
    with pytest.raises(UnsupportedByEngineError) as stage:
        run(demo_backend, lora=[{"model": str(folder), "transformer": "high"}])
    assert stage.value.field == "lora[0].transformer" and "single transformer" in str(stage.value)
    with pytest.raises(UnsupportedByEngineError) as missing:
        run(demo_backend, lora=[{"model": "civitai:58390@62833"}])
    assert missing.value.field == "lora[0].model" and ".safetensors" in missing.value.instead


# -- acceleratorOptions ---------------------------------------------------------------------------------------------
@pytest.fixture
def block_calls(demo_backend):
    """Counts how often the visual blocks' feed-forward layers really run (PyTorch forward hooks, observation only)."""
    pipe = demo_backend.pipeline("t2i")
    counter = {"calls": 0}

    def count(*_):
        counter["calls"] += 1

    handles = [
        block.feed_forward.in_layer.register_forward_hook(count) for block in pipe.transformer.visual_transformer_blocks
    ]
    yield counter
    for handle in handles:
        handle.remove()


@pytest.mark.parametrize(
    "options",
    [
        {"fbCache": True, "fbCacheThreshold": 0.3},
        {"teaCache": True, "teaCacheDistance": 0.5},
        {"dbCache": True, "dbCacheSkipInterval": 3},
    ],
    ids=lambda options: next(iter(options)),
)
def test_cache_skips_block_calls_and_stays_close_to_uncached(demo_backend, block_calls, options):
    steps = 16
    uncached = run(demo_backend, steps=steps)
    full = block_calls["calls"]
    block_calls["calls"] = 0
    cached = run(demo_backend, steps=steps, acceleratorOptions=options)
    assert block_calls["calls"] < full * 0.75
    other_seed = run(demo_backend, steps=steps, seed=8)
    assert np.abs(cached - uncached).mean() < np.abs(other_seed - uncached).mean() / 3
    # the hooks are gone afterwards: the next uncached run is the uncached image again
    assert np.array_equal(run(demo_backend, steps=steps), uncached)


def test_cache_window_and_max_consecutive_steps_are_honoured(demo_backend):
    steps = 16
    request = ImageInferenceRequest(
        **{**BASE, "steps": steps},
        acceleratorOptions={
            "fbCache": True,
            "fbCacheThreshold": 1.0,
            "cacheStartStep": 4,
            "cacheEndStep": 12,
            "cacheMaxConsecutiveSteps": 1,
        },
    )
    stats = demo_backend.generate(request).details["cache"]
    assert stats["transformer_calls"] == 2 * steps
    # outside the window (8 of 16 steps) every call computes; inside, at most one cached step in a row per pass
    assert stats["full_calls"] == 2 * 8 + 2 * 4
    assert stats["window"] == [4, 12]


def test_db_cache_threshold_is_refused_with_the_fix(demo_backend):
    with pytest.raises(UnsupportedByEngineError) as refused:
        run(demo_backend, acceleratorOptions={"dbCache": True, "dbCacheThreshold": 0.2})
    assert refused.value.field == "acceleratorOptions.dbCacheThreshold"
    assert "dbCacheSkipInterval" in refused.value.instead


# -- image inputs ---------------------------------------------------------------------------------------------------
def test_reference_image_runs_the_editing_pipeline(demo_backend):
    red = demo_backend.generate(ImageInferenceRequest(**BASE, referenceImages=[png((200, 30, 30))]))
    assert red.details["pipeline"] == "Kandinsky5I2IPipeline" and red.details["mode"] == "edit"
    assert red.images[0].to_pil().size == (128, 128)
    blue = run(demo_backend, referenceImages=[png((30, 30, 200))])
    assert not np.array_equal(np.asarray(red.images[0].to_pil(), dtype=np.int16), blue)


def test_seed_image_strength_one_is_text_to_image_and_lower_strength_uses_the_image(demo_backend, baseline):
    assert np.array_equal(run(demo_backend, seedImage=png(), strength=1.0), baseline)
    red, blue = (
        run(demo_backend, seedImage=png((200, 30, 30)), strength=0.5),
        run(demo_backend, seedImage=png((30, 30, 200)), strength=0.5),
    )
    assert not np.array_equal(red, baseline) and not np.array_equal(red, blue)


def test_image_input_refusals(demo_backend):
    with pytest.raises(UnsupportedByEngineError) as two:
        run(demo_backend, referenceImages=[png(), png()])
    assert two.value.field == "referenceImages"
    with pytest.raises(UnsupportedByEngineError) as remote:
        run(demo_backend, referenceImages=["https://example.com/cat.png"])
    assert remote.value.field == "referenceImages[0]"
    with pytest.raises(UnsupportedByEngineError) as multistep:
        run(demo_backend, seedImage=png(), strength=0.5, scheduler="UniPC")
    assert multistep.value.field == "scheduler" and "Euler" in multistep.value.instead


def test_an_unreadable_image_is_a_request_error_naming_the_field(demo_backend):
    from kandinsky_nb.errors import RequestValidationError

    broken_png = b"\x89PNG\r\n\x1a\n" + b"not really an image"
    with pytest.raises(RequestValidationError) as error:
        run(demo_backend, referenceImages=[broken_png])
    assert error.value.fields == ["referenceImages[0]"]


def test_content_check_is_refused_rather_than_faked(demo_backend):
    with pytest.raises(UnsupportedByEngineError) as refused:
        run(demo_backend, safety={"checkContent": True, "mode": "fast"})
    assert refused.value.field == "safety.checkContent"
