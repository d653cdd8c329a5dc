"""``lora`` on the local engine: LoRA files from disk applied to the Kandinsky 5 transformer with their weights.

``model`` is a local path: a ``.safetensors`` file, or a folder holding one (a diffusers LoRA folder with
``pytorch_lora_weights.safetensors``, a PEFT folder with ``adapter_model.safetensors`` + ``adapter_config.json``, or
the official Kandinsky layout ``lora.safetensors`` + ``config_lora.json``).

Keys are normalised before loading, because diffusers' ``pipe.load_lora_weights`` silently ignores a file whose keys
lack the ``transformer.`` prefix (the official Kandinsky LoRAs look like that): the image then equals the base model
with only a log warning. Here ``transformer.``, ``base_model.model.`` and PEFT's ``.default`` are stripped and the
state dict goes straight to ``transformer.load_lora_adapter(..., prefix=None)``.

``transformer``: Kandinsky 5.0 Image Lite has one transformer. ``"high"``/``"low"`` pick a stage of two-stage
(high-noise / low-noise) video models, so they are refused; ``"both"`` or unset applies the LoRA to the one there is.
A weight of 0 means no effect, so such an entry is not loaded at all.

A file that is not a LoRA for this transformer is refused with :class:`UnsupportedByEngineError` naming
``lora[i].model``, never "applied" with no effect nor failing deep inside PEFT: when planned, a file that is not
readable safetensors (empty, truncated, another format) or holds no ``lora_A``/``lora_B`` tensors; when loaded, one
whose layers are not the transformer's or whose shapes do not fit them (a LoRA made for another model).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ... import spec
from ...errors import UnsupportedByEngineError
from ...types import ImageInferenceRequest
from .stack import ENGINE

__all__ = ["LoraRun", "LoraUse", "lora_plan"]

# File names looked for inside a LoRA folder, in order.
WEIGHT_FILES = ("pytorch_lora_weights.safetensors", "adapter_model.safetensors", "lora.safetensors")
CONFIG_FILES = ("adapter_config.json", "config_lora.json")
_INSTEAD = "a path to a LoRA .safetensors file, or a folder with one (diffusers, PEFT or the official layout)"
# A LoRA tensor: "<layer path>.lora_A.weight" (or ".lora_A.<adapter>.weight"), as PEFT and diffusers name them.
_LORA_TENSOR = re.compile(r"^(?P<layer>.+)\.(?P<part>lora_A|lora_B)(?:\.[^.]+)?\.weight$")


@dataclass(frozen=True)
class LoraUse:
    """One LoRA to apply: its weights file, optional PEFT config file, and strength."""

    model: str
    file: Path
    weight: float
    config_file: Path | None = None
    index: int = 0  # the entry's position in the request's lora list, for error messages

    @property
    def field(self) -> str:
        return f"lora[{self.index}].model"

    def refuse(self, reason: str) -> UnsupportedByEngineError:
        return UnsupportedByEngineError(self.field, self.model, ENGINE, reason, _INSTEAD)

    def describe(self) -> dict[str, Any]:
        return {"model": self.model, "file": str(self.file), "weight": self.weight}


def lora_plan(request: ImageInferenceRequest) -> list[LoraUse]:
    """The LoRAs a request applies (weight-0 entries dropped), or UnsupportedByEngineError."""
    uses: list[LoraUse] = []
    for index, entry in enumerate(request.lora or []):
        if entry.transformer in ("high", "low"):
            raise UnsupportedByEngineError(
                f"lora[{index}].transformer",
                entry.transformer,
                ENGINE,
                f"{spec.MODEL_NAME} has a single transformer; 'high'/'low' select a stage of two-stage "
                "(high-noise/low-noise) video models",
                "transformer='both' or leave it unset",
            )
        weight = float(entry.weight if entry.weight is not None else spec.DEFAULTS["lora.weight"])  # type: ignore[arg-type]
        file, config_file = _locate(index, entry.model)
        if weight != 0:
            use = LoraUse(entry.model, file, weight, config_file, index)
            _check_file(use)
            uses.append(use)
    return uses


def _check_file(use: LoraUse) -> None:
    """Refuse a file that is not readable safetensors or holds no LoRA tensors (read from its header only)."""
    from safetensors import safe_open

    try:
        with safe_open(str(use.file), framework="pt") as handle:
            keys = list(handle.keys())
    except Exception as exc:  # safetensors reports a bad header with its own error type; any of them: not readable
        raise use.refuse(f"{use.file.name!r} is not a readable .safetensors file ({exc})") from None
    if not keys:
        raise use.refuse(f"{use.file.name!r} holds no tensors")
    if not any(_LORA_TENSOR.match(key) for key in normalise_keys(dict.fromkeys(keys))):
        raise use.refuse(
            f"{use.file.name!r} holds no LoRA tensors (none named '<layer>.lora_A.weight' / '<layer>.lora_B.weight'); "
            f"it is not a LoRA in the diffusers or PEFT format (its first key is {keys[0]!r})"
        )


def fit_problems(transformer: Any, state_dict: dict[str, Any]) -> list[str]:
    """Why a (normalised) LoRA state dict does not fit the transformer: layers it does not have, and shapes that
    differ from its layers'. Empty when it fits."""
    modules = dict(transformer.named_modules())
    problems: list[str] = []
    for key, tensor in state_dict.items():
        match = _LORA_TENSOR.match(key)
        if match is None:
            continue
        layer = modules.get(match["layer"])
        if layer is None:
            problems.append(f"{match['layer']!r} is not a layer of the transformer")
            continue
        wanted = getattr(layer, "in_features" if match["part"] == "lora_A" else "out_features", None)
        given = tensor.shape[1] if match["part"] == "lora_A" else tensor.shape[0]
        if wanted is not None and (tensor.dim() != 2 or given != wanted):
            problems.append(f"{key!r} has shape {tuple(tensor.shape)}, but the layer has {wanted} features")
    return problems


def _locate(index: int, model: str) -> tuple[Path, Path | None]:
    path = Path(model).expanduser()
    instead = _INSTEAD
    if path.is_file() and path.suffix == ".safetensors":
        return path, None
    if path.is_dir():
        for name in WEIGHT_FILES:
            if (path / name).is_file():
                return path / name, next((path / c for c in CONFIG_FILES if (path / c).is_file()), None)
        found = sorted(path.glob("*.safetensors"))
        if len(found) == 1:
            return found[0], next((path / c for c in CONFIG_FILES if (path / c).is_file()), None)
        reason = f"the folder {model!r} holds {len(found)} .safetensors files; the engine cannot tell which is the LoRA"
    elif path.exists():
        reason = f"{model!r} is not a .safetensors file"
    else:
        reason = (
            f"{model!r} is not a file or folder on this machine; the local engine loads LoRAs from disk (model ids such "
            "as 'civitai:...' are resolved only by the Runware cloud)"
        )
    raise UnsupportedByEngineError(f"lora[{index}].model", model, ENGINE, reason, instead)


def normalise_keys(state_dict: dict[str, Any]) -> dict[str, Any]:
    """Keys as the transformer names its modules: no ``transformer.``/``base_model.model.`` prefix, no ``.default``."""
    out = {}
    for key, value in state_dict.items():
        for prefix in ("transformer.", "base_model.model."):
            key = key.removeprefix(prefix)
        out[key.replace(".default.", ".")] = value
    return out


def _adapter_metadata(use: LoraUse) -> dict[str, Any] | None:
    """The LoRA config (rank, alpha, targets) when the file or folder records one; else diffusers infers the rank
    from the tensor shapes and uses alpha = rank."""
    from peft import LoraConfig
    from safetensors import safe_open

    raw: dict[str, Any] | None = None
    with safe_open(str(use.file), framework="pt") as handle:
        header = handle.metadata() or {}
    if "lora_adapter_metadata" in header:  # written by diffusers' save_lora_weights
        raw = json.loads(header["lora_adapter_metadata"])
        raw = {k.removeprefix("transformer."): v for k, v in raw.items()}
    elif use.config_file is not None:
        raw = json.loads(use.config_file.read_text())
    if not raw:
        return None
    allowed = set(LoraConfig.__dataclass_fields__)
    return {k: v for k, v in raw.items() if k in allowed and k not in ("base_model_name_or_path", "peft_type")}


class LoraRun:
    """Load the planned LoRAs into the transformer for one call, with their weights; remove them afterwards."""

    def __init__(self, pipe: Any, uses: list[LoraUse]) -> None:
        self.transformer = pipe.transformer
        self.uses = uses
        self.names = [f"knb_lora_{i}" for i in range(len(uses))]

    def __enter__(self) -> LoraRun:
        from safetensors.torch import load_file

        loaded: list[str] = []
        try:
            for name, use in zip(self.names, self.uses, strict=True):
                state_dict = normalise_keys(load_file(str(use.file)))
                problems = fit_problems(self.transformer, state_dict)
                if problems:
                    more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
                    raise use.refuse(
                        f"it does not fit {spec.MODEL_NAME}'s transformer: {problems[0]}{more}; it was made for "
                        "another model"
                    )
                try:
                    self.transformer.load_lora_adapter(
                        state_dict, prefix=None, adapter_name=name, metadata=_adapter_metadata(use)
                    )
                except Exception as exc:  # PEFT and diffusers fail on odd files with many types (IndexError, ...)
                    raise use.refuse(f"loading it failed ({type(exc).__name__}: {exc})") from exc
                if name not in (getattr(self.transformer, "peft_config", None) or {}):
                    raise use.refuse("no layer of the transformer took its weights, so it would have no effect")
                loaded.append(name)
            self.transformer.set_adapters(self.names, weights=[use.weight for use in self.uses])
        except Exception:
            if loaded:
                self.transformer.delete_adapters(loaded)
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.transformer.delete_adapters(self.names)
