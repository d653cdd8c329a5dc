"""LoRA files that are not what they claim: refused with UnsupportedByEngineError naming ``lora[i].model``, never
"applied" with no effect, never an IndexError from deep inside PEFT. Runs the real local engine on demo weights."""

from __future__ import annotations

from pathlib import Path

import pytest

from kandinsky_nb.errors import UnsupportedByEngineError
from kandinsky_nb.types import ImageInferenceRequest

pytest.importorskip("diffusers", reason="needs the 'local' extra")


@pytest.fixture(scope="module")
def bad_loras(demo_backend, tmp_path_factory) -> dict[str, Path]:
    import torch
    from safetensors.torch import save_file

    folder = tmp_path_factory.mktemp("bad-loras")
    transformer = demo_backend.pipeline("t2i").transformer
    layer_name, layer = next((n, m) for n, m in transformer.named_modules() if n.endswith("to_query"))
    files = {
        "empty": b"",
        "not safetensors": b"\x89PNG\r\n\x1a\n this is an image, not weights",
    }
    paths = {}
    for name, data in files.items():
        paths[name] = folder / f"{name.replace(' ', '-')}.safetensors"
        paths[name].write_bytes(data)
    tensors = {
        "no tensors": {},
        "plain weights, no LoRA": {f"transformer.{layer_name}.weight": torch.zeros(4, 4)},
        "another model's layers": {
            "unet.down_blocks.0.attentions.0.to_q.lora_A.weight": torch.zeros(4, 320),
            "unet.down_blocks.0.attentions.0.to_q.lora_B.weight": torch.zeros(320, 4),
        },
        "wrong shapes": {
            f"{layer_name}.lora_A.weight": torch.zeros(4, layer.in_features + 3),
            f"{layer_name}.lora_B.weight": torch.zeros(layer.out_features + 5, 4),
        },
    }
    for name, state_dict in tensors.items():
        paths[name] = folder / f"{name.replace(' ', '-').replace(',', '')}.safetensors"
        save_file(state_dict, str(paths[name]))
    empty_folder = folder / "diffusers-folder"
    empty_folder.mkdir()
    (empty_folder / "pytorch_lora_weights.safetensors").write_bytes(b"")
    paths["a folder holding an empty file"] = empty_folder
    return paths


CASES = {
    "empty": "not a readable .safetensors file",
    "not safetensors": "not a readable .safetensors file",
    "no tensors": "holds no tensors",
    "plain weights, no LoRA": "holds no LoRA tensors",
    "another model's layers": "is not a layer of the transformer",
    "wrong shapes": "does not fit",
    "a folder holding an empty file": "not a readable .safetensors file",
}


@pytest.mark.parametrize("case", list(CASES))
def test_a_bad_lora_file_is_refused_naming_the_entry(case, bad_loras, demo_backend):
    good_or_zero = {"model": str(bad_loras["empty"]), "weight": 0}  # weight 0: never loaded, so never refused
    request = ImageInferenceRequest(
        positivePrompt="a red fox in snow", seed=1, lora=[good_or_zero, {"model": str(bad_loras[case])}]
    )
    with pytest.raises(UnsupportedByEngineError) as caught:
        demo_backend.generate(request)
    error = caught.value
    assert error.field == "lora[1].model"
    assert CASES[case] in str(error)
    assert ".safetensors" in error.instead
    # nothing stays loaded: the next request runs on the bare transformer
    transformer = demo_backend.pipeline("t2i").transformer
    assert not getattr(transformer, "peft_config", None)
    assert demo_backend.generate(ImageInferenceRequest(positivePrompt="a red fox in snow", seed=1)).images
