"""Images with known differences, logged as a sweep in a real run log (shared by the quality tests)."""

from __future__ import annotations

import io
import itertools
import json
import uuid
import zlib
from collections.abc import Callable, Iterable

import numpy as np
from PIL import Image

from kandinsky_nb.runlog import RunLog
from kandinsky_nb.types import GeneratedImage, Generation, ImageInferenceRequest, ImageInferenceResult

PROMPT = "a red fox in snow"
# The width of the tiny random CLIP's joint embedding space.
PROJECTION = 8


def png(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def scene(seed: int, size: tuple[int, int] = (64, 48)) -> np.ndarray:
    """A smooth colourful picture that depends on the seed (the 'converged' image of that seed)."""
    width, height = size
    y, x = np.mgrid[0:height, 0:width].astype(float)
    phase = seed * 0.7
    red = 128 + 100 * np.sin(x / 7 + phase)
    green = 128 + 100 * np.cos(y / 5 - phase)
    blue = 128 + 60 * np.sin((x + y) / 11 + 2 * phase)
    return np.clip(np.stack([red, green, blue], axis=2), 0, 255).astype(np.uint8)


def noisy(image: np.ndarray, amount: float, seed: int) -> np.ndarray:
    """``image`` plus Gaussian noise of standard deviation ``amount`` (0 gives the image itself)."""
    if amount == 0:
        return image.copy()
    rng = np.random.default_rng(seed)
    return np.clip(image + rng.normal(0, amount, image.shape), 0, 255).astype(np.uint8)


def converging(cell: dict) -> np.ndarray:
    """The picture a converging sampler would draw: noise that shrinks as steps grow (none at 50 steps), more for a
    low CFG; each scheduler adds its own noise pattern."""
    amount = max(0.0, 50 - cell["steps"]) * (1.5 if cell.get("CFGScale", 5) < 5 else 1.0)
    pattern = zlib.crc32(cell.get("scheduler", "Euler").encode()) % 1000
    return noisy(scene(cell.get("seed", 1)), amount, seed=pattern + cell["steps"])


def log_cells(
    runs: RunLog,
    name: str,
    cells: Iterable[dict],
    image_for: Callable[[dict], np.ndarray] = converging,
    *,
    cost: Callable[[dict], float] | None = None,
    engine: str = "priced",
    demo: bool = False,
    register: dict | None = None,
) -> list[int]:
    """Log one finished generation per cell (coordinates: steps, CFGScale, scheduler, seed) as sweep ``name``;
    returns the row ids. ``cost`` defaults to a price proportional to steps; ``register`` also stores the sweep's
    definition (its planned axes)."""
    if register is not None:
        runs.register_sweep(name, register)
    ids = []
    for cell in cells:
        request = ImageInferenceRequest(
            positivePrompt=cell.get("prompt", PROMPT),
            width=1024,
            height=1024,
            steps=cell["steps"],
            CFGScale=cell.get("CFGScale", 5),
            scheduler=cell.get("scheduler", "Euler"),
            seed=cell.get("seed", 1),
        )
        price = cost(cell) if cost else 0.0004 * cell["steps"]
        result = ImageInferenceResult(
            taskUUID=request.taskUUID, imageUUID=str(uuid.uuid4()), seed=request.seed, cost=price
        )
        image = GeneratedImage(result=result, data=png(image_for(cell)))
        generation = Generation(request, [image], engine, 0.01 * cell["steps"], demo=demo)
        key = json.dumps({k: cell[k] for k in sorted(cell) if k != "prompt"}, separators=(",", ":"))
        ids.extend(runs.record_generation(generation, sweep_id=name, sweep_cell=key))
    return ids


def grid(**axes: list) -> list[dict]:
    """Every combination of the axes, the first axis outermost (as a sweep plans them)."""
    names = list(axes)
    return [dict(zip(names, values, strict=True)) for values in itertools.product(*axes.values())]


def _tokenizer():
    """A CLIP tokenizer with one token per byte-level character (no merges), as the demo weights build theirs."""
    from tokenizers import pre_tokenizers
    from transformers import CLIPTokenizer

    chars = sorted(pre_tokenizers.ByteLevel.alphabet())
    vocab = {c: i for i, c in enumerate(chars)}
    vocab.update({c + "</w>": len(chars) + i for i, c in enumerate(chars)})
    vocab["<|startoftext|>"] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    return CLIPTokenizer(vocab=vocab, merges=[], model_max_length=77)


def build_tiny_clip(folder):
    """A randomly initialised CLIP (16-wide, one layer, 32-pixel images) saved like a real checkpoint, and marked
    as random weights."""
    import torch
    from transformers import CLIPConfig, CLIPImageProcessorPil, CLIPModel

    from kandinsky_nb.quality import mark_random_weights

    tokenizer = _tokenizer()
    config = CLIPConfig(
        text_config={
            "vocab_size": len(tokenizer),
            "hidden_size": 16,
            "intermediate_size": 32,
            "num_hidden_layers": 1,
            "num_attention_heads": 2,
            "max_position_embeddings": 77,
            "bos_token_id": tokenizer.bos_token_id,
            "eos_token_id": tokenizer.eos_token_id,
            "pad_token_id": tokenizer.pad_token_id,
        },
        vision_config={
            "hidden_size": 16,
            "intermediate_size": 32,
            "num_hidden_layers": 1,
            "num_attention_heads": 2,
            "image_size": 32,
            "patch_size": 8,
        },
        projection_dim=PROJECTION,
    )
    torch.manual_seed(0)
    CLIPModel(config).eval().save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    CLIPImageProcessorPil(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}).save_pretrained(folder)
    mark_random_weights(folder, "tiny random CLIP for the quality tests")
    return folder
