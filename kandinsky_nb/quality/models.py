"""Scorers with model weights: prompt alignment (CLIP score) and an aesthetic predictor on CLIP image embeddings.

Both load through ``transformers`` (the ``local`` extra) from a folder saved with ``save_pretrained`` or a hub id, as
the local engine loads its pipelines: a folder is read offline, a hub id may download once into the hub cache.
Weights load on the first score, not at construction, so building a scorer is free.

A folder holding :data:`RANDOM_WEIGHTS_MARKER` has random weights (the tests' tiny CLIP models): its scorer says
``random_weights=True``, its version says ``random-weights``, and its scores are noise.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import ConfigurationError, MissingDependencyError
from .scorers import Scorer

if TYPE_CHECKING:
    import numpy as np

__all__ = [
    "AESTHETIC_CLIP",
    "AESTHETIC_HEAD_URL",
    "CLIP_SCORE_MODEL",
    "RANDOM_WEIGHTS_MARKER",
    "AestheticScore",
    "CLIPScore",
    "is_random_weights",
    "mark_random_weights",
]

# CLIP score as Hessel et al. (2021) define it, on the CLIP torchmetrics also defaults to.
CLIP_SCORE_MODEL = "openai/clip-vit-large-patch14"
# LAION's improved aesthetic predictor ("sac+logos+ava1-l14-linearMSE") was trained on ViT-L/14 image embeddings;
# its head is published as a .pth file on GitHub, not on the hub: download it and pass its path as head=.
AESTHETIC_CLIP = "openai/clip-vit-large-patch14"
AESTHETIC_HEAD_URL = (
    "https://github.com/christophschuhmann/improved-aesthetic-predictor/raw/main/sac+logos+ava1-l14-linearMSE.pth"
)
RANDOM_WEIGHTS_MARKER = "kandinsky_nb_random_weights.json"


def is_random_weights(source: str | os.PathLike[str]) -> bool:
    """True when ``source`` is a folder marked as holding random weights."""
    return (Path(source) / RANDOM_WEIGHTS_MARKER).is_file()


def mark_random_weights(folder: str | os.PathLike[str], what: str) -> None:
    """Mark a folder of random weights, so every scorer that loads it labels its scores as noise."""
    note = {"what": what, "note": "random weights: scores are noise"}
    (Path(folder) / RANDOM_WEIGHTS_MARKER).write_text(json.dumps(note, indent=2) + "\n", encoding="utf-8")


def _torch_and_transformers(feature: str) -> tuple[Any, Any]:
    try:
        import torch
        import transformers
    except ImportError as exc:
        raise MissingDependencyError(feature, "local", exc.name) from exc
    return torch, transformers


def _weights_label(source: str | os.PathLike[str]) -> str:
    """How a score's version names its weights: the hub id, or the folder (with a random-weights warning)."""
    path = Path(source)
    if not path.is_dir():
        return str(source)
    label = str(path.resolve())
    return f"random-weights:{label}" if is_random_weights(path) else label


class _CLIP:
    """A CLIP model with its tokenizer and image processor, loaded once (thread-safe) from a folder or hub id."""

    def __init__(self, source: str | os.PathLike[str], device: str | None, feature: str) -> None:
        self.source = source
        self.device = device
        self.feature = feature
        self._lock = threading.Lock()
        self._loaded: tuple[Any, Any, Any] | None = None

    def load(self) -> tuple[Any, Any, Any]:
        with self._lock:
            if self._loaded is None:
                self._loaded = self._load()
            return self._loaded

    def _load(self) -> tuple[Any, Any, Any]:
        torch, transformers = _torch_and_transformers(self.feature)
        # The PIL image processor: the default one needs torchvision, which this toolkit does not install.
        from transformers import CLIPImageProcessorPil

        local = Path(self.source).is_dir()
        try:
            model = transformers.CLIPModel.from_pretrained(self.source, local_files_only=local).eval()
            tokenizer = transformers.AutoTokenizer.from_pretrained(self.source, local_files_only=local)
            processor = CLIPImageProcessorPil.from_pretrained(self.source, local_files_only=local)
        except (OSError, ValueError) as exc:
            raise ConfigurationError(
                f"weights={os.fspath(self.source)!r}: cannot load a CLIP model for {self.feature} ({exc}). Give a "
                f"folder saved with CLIPModel.save_pretrained (with its tokenizer and image processor) or a hub id "
                f"you can download, such as {CLIP_SCORE_MODEL!r}"
            ) from exc
        device = self.device or ("cuda" if torch.cuda.is_available() else "cpu")
        return model.to(device), tokenizer, processor

    def image_embeddings(self, images: Sequence[np.ndarray]) -> Any:
        """L2-normalised image embeddings (one row per image)."""
        import torch

        model, _, processor = self.load()
        pixels = processor(images=list(images), return_tensors="pt")["pixel_values"].to(model.device, model.dtype)
        with torch.inference_mode():
            features = _as_tensor(model.get_image_features(pixel_values=pixels))
        return torch.nn.functional.normalize(features.float(), dim=-1)

    def text_embeddings(self, texts: Sequence[str]) -> Any:
        """L2-normalised text embeddings; texts longer than CLIP's context are truncated, as CLIP score does."""
        import torch

        model, tokenizer, _ = self.load()
        limit = model.config.text_config.max_position_embeddings
        tokens = tokenizer(list(texts), padding=True, truncation=True, max_length=limit, return_tensors="pt")
        with torch.inference_mode():
            features = _as_tensor(model.get_text_features(**tokens.to(model.device)))
        return torch.nn.functional.normalize(features.float(), dim=-1)

    def close(self) -> None:
        with self._lock:
            self._loaded = None


def _as_tensor(output: Any) -> Any:
    """``get_*_features`` returns a tensor in older transformers and an output object holding it in newer ones."""
    pooled = getattr(output, "pooler_output", None)
    return output if pooled is None else pooled


def _batches(count: int, size: int) -> list[range]:
    return [range(start, min(start + size, count)) for start in range(0, count, size)]


class CLIPScore(Scorer):
    """Prompt alignment: ``100 * max(cos(image, prompt), 0)`` in CLIP's joint space (Hessel et al., 2021), the
    definition torchmetrics uses. About 30 is a good match for ViT-L/14; compare values of one model only.

    ``weights``: a folder saved with ``save_pretrained`` or a hub id (default ``openai/clip-vit-large-patch14``).
    """

    metric = "clip_score"
    against = "prompt"
    label = "CLIP score"

    def __init__(
        self, weights: str | os.PathLike[str] = CLIP_SCORE_MODEL, *, device: str | None = None, batch_size: int = 16
    ) -> None:
        if batch_size < 1:
            raise ConfigurationError(f"batch_size={batch_size!r}: must be at least 1; use 16 on a GPU, 4 on a CPU")
        self._clip = _CLIP(weights, device, "CLIP scoring")
        self.batch_size = batch_size
        self.random_weights = Path(weights).is_dir() and is_random_weights(weights)
        self.version = f"1+{_weights_label(weights)}"

    def score(
        self, image: np.ndarray, *, reference: np.ndarray | None = None, prompt: str | None = None
    ) -> float | None:
        return self.score_many([image], prompts=[prompt])[0]

    def score_many(
        self,
        images: Sequence[np.ndarray],
        *,
        references: Sequence[np.ndarray | None] | None = None,
        prompts: Sequence[str | None] | None = None,
    ) -> list[float | None]:
        if prompts is None or any(not prompt for prompt in prompts):
            raise ConfigurationError(
                "prompt=None: CLIP score measures how well an image matches its prompt; pass each image's prompt "
                "(score_sweep takes it from the run log)"
            )
        scores: list[float | None] = []
        for batch in _batches(len(images), self.batch_size):
            image_features = self._clip.image_embeddings([images[i] for i in batch])
            text_features = self._clip.text_embeddings([prompts[i] for i in batch])  # type: ignore[misc]
            cosines = (image_features * text_features).sum(dim=-1)
            scores.extend(100.0 * max(float(c), 0.0) for c in cosines)
        return scores

    def close(self) -> None:
        self._clip.close()


class AestheticScore(Scorer):
    """An aesthetic predictor: a linear head over L2-normalised CLIP image embeddings (LAION's improved aesthetic
    predictor is one; its scores run from about 1 to 10, 5 to 6 being typical of good photos).

    ``head``: the head's weights: a ``.pth``/``.pt`` (``torch.save`` of a state dict) or ``.safetensors`` file, or a
    folder holding exactly one such file. Its layers are read in order from keys ``layers.<i>.weight`` /
    ``layers.<i>.bias`` (LAION's layout: Linear layers with dropout between and no activations, so at inference the
    head is a product of affine maps). Download LAION's from :data:`AESTHETIC_HEAD_URL`.
    ``clip``: the CLIP whose embeddings the head was trained on (default ``openai/clip-vit-large-patch14``).
    """

    metric = "aesthetic"
    label = "aesthetic score"

    def __init__(
        self,
        head: str | os.PathLike[str],
        *,
        clip: str | os.PathLike[str] = AESTHETIC_CLIP,
        device: str | None = None,
        batch_size: int = 16,
    ) -> None:
        if batch_size < 1:
            raise ConfigurationError(f"batch_size={batch_size!r}: must be at least 1; use 16 on a GPU, 4 on a CPU")
        self.head_path = _head_file(head)
        self._clip = _CLIP(clip, device, "Aesthetic scoring")
        self.batch_size = batch_size
        self.random_weights = (Path(clip).is_dir() and is_random_weights(clip)) or is_random_weights(
            self.head_path.parent
        )
        head_label = _weights_label(self.head_path.parent) + "/" + self.head_path.name
        self.version = f"1+{_weights_label(clip)}+{head_label}"
        self._layers: list[tuple[Any, Any]] | None = None
        self._lock = threading.Lock()

    def _head(self) -> list[tuple[Any, Any]]:
        with self._lock:
            if self._layers is None:
                self._layers = _read_head(self.head_path)
            return self._layers

    def score(
        self, image: np.ndarray, *, reference: np.ndarray | None = None, prompt: str | None = None
    ) -> float | None:
        return self.score_many([image])[0]

    def score_many(
        self,
        images: Sequence[np.ndarray],
        *,
        references: Sequence[np.ndarray | None] | None = None,
        prompts: Sequence[str | None] | None = None,
    ) -> list[float | None]:
        layers = self._head()
        scores: list[float | None] = []
        for batch in _batches(len(images), self.batch_size):
            values = self._clip.image_embeddings([images[i] for i in batch])
            width = values.shape[-1]
            if layers[0][0].shape[1] != width:
                raise ConfigurationError(
                    f"head={os.fspath(self.head_path)!r}: takes {layers[0][0].shape[1]}-wide embeddings but the CLIP "
                    f"gives {width}; pass clip= the model the head was trained on (LAION's: {AESTHETIC_CLIP!r})"
                )
            for weight, bias in layers:
                values = values @ weight.T.to(values.device) + bias.to(values.device)
            scores.extend(float(v) if math.isfinite(float(v)) else None for v in values.reshape(-1))
        return scores

    def close(self) -> None:
        self._clip.close()
        with self._lock:
            self._layers = None


_HEAD_SUFFIXES = (".pth", ".pt", ".safetensors")


def _head_file(head: str | os.PathLike[str]) -> Path:
    path = Path(head).expanduser()
    if path.is_dir():
        found = sorted(p for p in path.iterdir() if p.suffix in _HEAD_SUFFIXES)
        if len(found) == 1:
            return found[0]
        raise ConfigurationError(
            f"head={os.fspath(head)!r}: a folder needs exactly one {', '.join(_HEAD_SUFFIXES)} file, found "
            f"{len(found)}; pass the file itself"
        )
    if path.is_file() and path.suffix in _HEAD_SUFFIXES:
        return path
    problem = f"not a {', '.join(_HEAD_SUFFIXES)} file" if path.exists() else "no such file or folder"
    raise ConfigurationError(
        f"head={os.fspath(head)!r}: {problem}; download LAION's head from {AESTHETIC_HEAD_URL} and pass its path"
    )


def _read_head(path: Path) -> list[tuple[Any, Any]]:
    """The head's affine layers ``(weight, bias)`` in order, from a state dict with ``layers.<i>.weight`` keys."""
    torch, _ = _torch_and_transformers("Aesthetic scoring")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        state = load_file(path)
    else:
        state = torch.load(path, map_location="cpu", weights_only=True)  # weights only: never run pickled code
    indices = sorted({int(key.split(".")[1]) for key in state if key.startswith("layers.") and key.endswith(".weight")})
    if not indices:
        raise ConfigurationError(
            f"head={str(path)!r}: no 'layers.<i>.weight' keys (found {sorted(state)[:5]}); give a state dict in the "
            "layout of LAION's improved aesthetic predictor"
        )
    layers = [(state[f"layers.{i}.weight"].float(), state[f"layers.{i}.bias"].float()) for i in indices]
    for (weight, _), (following, _) in itertools.pairwise(layers):
        if following.shape[1] != weight.shape[0]:
            raise ConfigurationError(
                f"head={str(path)!r}: layer widths do not chain ({tuple(weight.shape)} then {tuple(following.shape)}); "
                "give the state dict of one sequential head"
            )
    return layers
