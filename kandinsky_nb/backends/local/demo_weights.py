"""Offline demo weights: tiny, randomly initialised Kandinsky 5 pipelines built from configs in about a second.

They are the real diffusers classes (``Kandinsky5T2IPipeline``, ``Kandinsky5I2IPipeline``) with a few hundred
thousand random parameters, so every code path of the local engine runs with no network and no GPU (CI, Binder, a
first try). Their images are noise. Two facts make them useful for tests:

* The tokenizers are trained here, offline, on the prompt templates, so the pipelines' fixed crop of the Qwen system
  prefix (40 tokens for text to image) lands exactly where it does with the real tokenizer.
* ``Kandinsky5Modulation`` is zero-initialised (adaLN-zero): a freshly built transformer ignores the prompt, the
  negative prompt, the timestep and CFG. Its weights are re-drawn small and random so those inputs change the image.

Layout of the folder: ``t2i/`` and ``i2i/`` (``save_pretrained`` output) and ``demo-weights.json``, written last. A
folder is trusted only when that marker names the current recipe, so an interrupted build is rebuilt, never used.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from ... import settings
from ...errors import MissingDependencyError
from .stack import import_local_stack, quiet_progress

__all__ = ["DEMO_RECIPE", "build_demo_weights", "demo_weights_ready", "is_demo_weights"]

# Bump when the recipe changes: folders built by another recipe are rebuilt.
DEMO_RECIPE = "k5-tiny-1"
MARKER = "demo-weights.json"
PIPELINES = {"t2i": "Kandinsky5T2IPipeline", "i2i": "Kandinsky5I2IPipeline"}

T2I_TEMPLATE_PREFIX = (
    "<|im_start|>system\nYou are a prompt engineer. Describe the image by detailing the color, shape, size, "
    "texture, quantity, text, spatial relationships of the objects and background:<|im_end|>\n<|im_start|>user\n"
)
I2I_TEMPLATE_PREFIX = (
    "<|im_start|>system\nYou are a prompt engineer. Based on the provided source image (first image) and target "
    "image (second image), create an interesting text prompt that can be used together with the source image to "
    "create the target image:<|im_end|><|im_start|>user"
)
QWEN_SPECIALS = (
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|vision_pad|>",
    "<|image_pad|>",
    "<|video_pad|>",
)
# A few everyday prompt words so short prompts are not all single bytes.
_CORPUS_PROMPTS = (
    "a red fox in snow",
    "a blue circle on a white background",
    "a cat in a red hat",
    "a lighthouse at sunset, oil painting",
    "portrait of an astronaut, studio lighting",
    "blurry, low quality, ugly, deformed, watermark, text",
    "make the sky purple",
    "replace the cat with a dog",
)
QWEN_HIDDEN = 32
CLIP_HIDDEN = 16


def default_demo_folder() -> Path:
    return settings.home_dir() / "demo-weights"


def _read_marker(folder: Path) -> dict[str, Any] | None:
    try:
        marker = json.loads((folder / MARKER).read_text())
    except (OSError, ValueError):
        return None
    return marker if isinstance(marker, dict) else None


def is_demo_weights(folder: str | os.PathLike[str]) -> bool:
    """Whether a folder holds demo weights (of any recipe): the engine then labels its output as noise."""
    return _read_marker(Path(folder)) is not None


def demo_weights_ready(folder: str | os.PathLike[str]) -> bool:
    """Whether a folder holds a complete build of the current recipe."""
    folder = Path(folder)
    marker = _read_marker(folder)
    return (
        marker is not None
        and marker.get("recipe") == DEMO_RECIPE
        and all((folder / name / "model_index.json").is_file() for name in PIPELINES)
    )


def build_demo_weights(folder: str | os.PathLike[str] | None = None) -> Path:
    """Build the tiny T2I and I2I demo pipelines into ``folder`` (default ``<home>/demo-weights``) and return it.

    Idempotent: a complete build of the current recipe is reused. Safe against crashes and concurrent builders: the
    pipelines are written to a private temporary folder, moved into place, and the marker is written last, under a
    file lock.
    """
    folder = Path(folder).expanduser() if folder is not None else default_demo_folder()
    if demo_weights_ready(folder):
        return folder
    try:
        from filelock import FileLock
    except ImportError as exc:  # filelock comes with huggingface_hub, part of the local extra
        raise MissingDependencyError("Demo weights", "local", exc.name) from exc
    folder.mkdir(parents=True, exist_ok=True)
    with FileLock(str(folder / ".build.lock")):
        if demo_weights_ready(folder):  # another process finished while we waited
            return folder
        (folder / MARKER).unlink(missing_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=folder))
        try:
            info = _build_into(staging)
            for name in PIPELINES:
                target = folder / name
                if target.exists():
                    shutil.rmtree(target)  # a stale or partial build of ours
                os.replace(staging / name, target)
            marker_tmp = staging / MARKER
            marker_tmp.write_text(json.dumps({"recipe": DEMO_RECIPE, **info}, indent=2))
            os.replace(marker_tmp, folder / MARKER)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return folder


# ----------------------------------------------------------------------------------------------------------------------
# The recipe (needs the local extra)
# ----------------------------------------------------------------------------------------------------------------------
def _build_into(staging: Path) -> dict[str, Any]:
    torch, diffusers = import_local_stack("Demo weights")
    qwen_tokenizer = _qwen_tokenizer()
    clip_tokenizer = _clip_tokenizer()
    text_encoder, text_encoder_2 = _text_encoders(torch, qwen_tokenizer, clip_tokenizer)
    vae = _vae(torch, diffusers)
    # The model's official sampler: flow-matching Euler with shift 3 (the diffusers unit tests' shift=7 is test-only).
    scheduler = diffusers.FlowMatchEulerDiscreteScheduler(shift=3.0)
    for name, class_name in PIPELINES.items():
        pipeline_class = getattr(diffusers, class_name)
        pipe = pipeline_class(
            transformer=_transformer(torch, diffusers, visual_cond=(name == "i2i")),
            vae=vae,
            text_encoder=text_encoder,
            # Saved as a plain Qwen2Tokenizer: a Qwen2VLProcessor cannot be saved without torchvision. The engine
            # wraps it in a processor when it loads the editing pipeline.
            tokenizer=qwen_tokenizer,
            text_encoder_2=text_encoder_2,
            tokenizer_2=clip_tokenizer,
            scheduler=scheduler,
        )
        with quiet_progress():
            pipe.save_pretrained(staging / name, safe_serialization=True)
    return {
        "what": "tiny random Kandinsky 5 pipelines for offline runs; their images are noise",
        "diffusers": diffusers.__version__,
        "torch": torch.__version__,
        "pipelines": PIPELINES,
    }


def _qwen_tokenizer() -> Any:
    """A byte-level BPE with Qwen2's pre-tokenizer, trained on the prompt templates (so each template word is one
    token and the T2I system prefix is exactly the 40 tokens the pipeline crops), plus Qwen's special tokens."""
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import Qwen2Tokenizer
    from transformers.models.qwen2.tokenization_qwen2 import PRETOKENIZE_REGEX

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(PRETOKENIZE_REGEX), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=1024,
        min_frequency=1,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        special_tokens=[],
        show_progress=False,
    )
    # Specials become newlines in the corpus, so "system" and "user" train as words of their own.
    templates = [
        text.replace("<|im_start|>", "\n").replace("<|im_end|>", "\n")
        for text in (T2I_TEMPLATE_PREFIX, I2I_TEMPLATE_PREFIX)
    ]
    bpe.train_from_iterator((templates + list(_CORPUS_PROMPTS)) * 20, trainer=trainer)
    model = json.loads(bpe.to_str())["model"]
    vocab = dict(model["vocab"])
    merges = [tuple(m) if isinstance(m, list) else tuple(m.split(" ")) for m in model["merges"]]
    for special in QWEN_SPECIALS:  # at the end of the vocabulary, as in Qwen
        vocab[special] = len(vocab)
    tokenizer = Qwen2Tokenizer(
        vocab=vocab, merges=merges, unk_token=None, eos_token="<|im_end|>", pad_token="<|endoftext|>"
    )
    tokenizer.add_tokens([AddedToken(s, special=True, normalized=False) for s in QWEN_SPECIALS], special_tokens=True)
    return tokenizer


def _clip_tokenizer() -> Any:
    """A CLIP tokenizer with one token per byte-level character (no merges) and CLIP's start/end tokens."""
    from tokenizers import pre_tokenizers
    from transformers import CLIPTokenizer

    chars = sorted(pre_tokenizers.ByteLevel.alphabet())
    vocab = {c: i for i, c in enumerate(chars)}
    for c in chars:
        vocab[c + "</w>"] = len(vocab)
    vocab["<|startoftext|>"] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    return CLIPTokenizer(vocab=vocab, merges=[], model_max_length=77)


def _text_encoders(torch: Any, qwen_tokenizer: Any, clip_tokenizer: Any) -> tuple[Any, Any]:
    from transformers import CLIPTextConfig, CLIPTextModel, Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    ids = {s: qwen_tokenizer.convert_tokens_to_ids(s) for s in QWEN_SPECIALS}
    torch.manual_seed(0)
    qwen_config = Qwen2_5_VLConfig(
        text_config={
            "vocab_size": len(qwen_tokenizer),
            "hidden_size": QWEN_HIDDEN,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "num_key_value_heads": 2,
            "max_position_embeddings": 2048,
            "rope_scaling": {"mrope_section": [2, 2, 4], "rope_type": "default", "type": "default"},
            "rope_theta": 1000000.0,
            "bos_token_id": ids["<|endoftext|>"],
            "eos_token_id": ids["<|im_end|>"],
            "pad_token_id": ids["<|endoftext|>"],
        },
        vision_config={
            "depth": 2,
            "hidden_size": QWEN_HIDDEN,
            "intermediate_size": 32,
            "num_heads": 2,
            "out_hidden_size": QWEN_HIDDEN,
            "fullatt_block_indexes": [1],
        },
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
    )
    qwen = Qwen2_5_VLForConditionalGeneration(qwen_config).eval()
    torch.manual_seed(0)
    clip_config = CLIPTextConfig(
        vocab_size=len(clip_tokenizer),
        hidden_size=CLIP_HIDDEN,
        intermediate_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        max_position_embeddings=77,
        projection_dim=CLIP_HIDDEN,
        bos_token_id=clip_tokenizer.bos_token_id,
        eos_token_id=clip_tokenizer.eos_token_id,
        pad_token_id=clip_tokenizer.pad_token_id,
    )
    return qwen, CLIPTextModel(clip_config).eval()


def _vae(torch: Any, diffusers: Any) -> Any:
    torch.manual_seed(0)
    # Four blocks give three downsamples: the real x8 spatial factor of the Flux VAE, with its 16 latent channels.
    return diffusers.AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=["DownEncoderBlock2D"] * 4,
        up_block_types=["UpDecoderBlock2D"] * 4,
        block_out_channels=[32, 32, 32, 32],
        layers_per_block=1,
        act_fn="silu",
        latent_channels=16,
        norm_num_groups=32,
        sample_size=64,
        scaling_factor=0.3611,
        shift_factor=0.1159,
        use_quant_conv=False,
        use_post_quant_conv=False,
        mid_block_add_attention=False,
        force_upcast=True,
    ).eval()


def _transformer(torch: Any, diffusers: Any, *, visual_cond: bool) -> Any:
    from diffusers.models.transformers.transformer_kandinsky import Kandinsky5Modulation

    torch.manual_seed(0)
    transformer = diffusers.Kandinsky5Transformer3DModel(
        in_visual_dim=16,
        out_visual_dim=16,
        in_text_dim=QWEN_HIDDEN,
        in_text_dim2=CLIP_HIDDEN,
        time_dim=32,
        patch_size=(1, 2, 2),
        model_dim=32,
        ff_dim=64,
        num_text_blocks=1,
        num_visual_blocks=4,
        axes_dims=(4, 6, 6),  # head_dim 16: two heads
        visual_cond=visual_cond,
        attention_type="regular",
    ).eval()
    # adaLN-zero: with zero modulation weights every gate is 0 and the model ignores its conditioning entirely.
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for module in transformer.modules():
            if isinstance(module, Kandinsky5Modulation):
                layer = module.out_layer
                layer.weight.copy_(torch.randn(layer.weight.shape, generator=generator) * 0.1)
                layer.bias.copy_(torch.randn(layer.bias.shape, generator=generator) * 0.1)
    return transformer
