"""The diffusers and torch glue of the local engine: loading a Kandinsky 5 pipeline, building a scheduler, one
seeded pipeline call, image to image's starting latents, and decoding and encoding images.

Each function does one thing to objects it is given; the choices (which scheduler, which size, which seeds) come
from :mod:`.plan`, and the state (loaded pipelines, the lock, timing) lives in :class:`~.engine.LocalBackend`.
torch, diffusers, transformers and PIL are imported inside the functions, so importing this module stays cheap.
"""

from __future__ import annotations

import contextlib
import io
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ... import _media
from ...errors import BackendError, FieldProblem, RequestValidationError
from ...types import ImageRef
from .demo_weights import PIPELINES
from .schedulers import SchedulerChoice
from .stack import import_local_stack, quiet_progress

if TYPE_CHECKING:
    from PIL import Image as PILImage

__all__ = [
    "build_scheduler",
    "encode_image",
    "free_gpu_memory",
    "load_image",
    "load_pipeline",
    "run_seeded",
    "seed_image_latents",
    "start_part_way",
]


# -- loading ----------------------------------------------------------------------------------------------------------
def load_pipeline(
    kind: str,
    source: str,
    *,
    device: str,
    dtype: Any,
    offload: bool,
    resolutions: list[tuple[int, int]],
) -> Any:
    """Load the ``"t2i"`` or ``"i2i"`` pipeline from a folder or hub id onto ``device``, ready to run.

    ``resolutions``: the only sizes it renders. Hub, network and format problems become a BackendError that says
    what to point ``weights=`` at.
    """
    _, diffusers = import_local_stack()
    pipeline_class = getattr(diffusers, PIPELINES[kind])
    local = Path(source).is_dir()
    try:
        # ``dtype=`` (diffusers' current name for ``torch_dtype=``): the weights load in bf16 on a GPU while the
        # modules the model keeps in fp32 (time embedding, modulation) stay fp32. Download bars stay visible.
        # Without torchvision the checkpoint's Qwen2VLProcessor cannot be loaded: skip that component here and
        # build the processor around its tokenizer below.
        manual_processor = kind == "i2i" and not _torchvision_available()
        extra: dict[str, Any] = {"tokenizer": None} if manual_processor else {}
        with quiet_progress(enabled=local):
            pipe = pipeline_class.from_pretrained(source, dtype=dtype, local_files_only=local, **extra)
            if manual_processor:
                from transformers import AutoTokenizer

                plain = AutoTokenizer.from_pretrained(source, subfolder="tokenizer", local_files_only=local)
                pipe.tokenizer = _qwen_processor(plain, config_source=(source, local))
    except Exception as exc:  # hub/network/format problems: say what to do
        raise BackendError(
            f"Could not load {PIPELINES[kind]} from {source!r}: {exc}. Point weights= (or KANDINSKY_NB_WEIGHTS) at "
            "a diffusers folder, a hub id you can download, or 'demo' for the offline demo weights."
        ) from exc
    if kind == "i2i":
        pipe.tokenizer = _qwen_processor(pipe.tokenizer)  # demo weights save a plain tokenizer
    if offload:
        # Components move to the GPU only while they run: a ~29 GB bf16 pipeline (6B transformer, 8B
        # Qwen2.5-VL) then fits a smaller card, at some speed.
        pipe.enable_model_cpu_offload(device=device)
    else:
        pipe.to(device)
    # The pipeline snaps any other size to its 7 native ~1 MP sizes; tell it the sizes this engine renders.
    pipe.resolutions = resolutions
    pipe.set_progress_bar_config(disable=True)
    return pipe


def free_gpu_memory() -> None:
    """Return the memory of pipelines just dropped to the GPU (after the last reference to them is gone)."""
    import gc

    torch, _ = import_local_stack()
    gc.collect()
    torch.cuda.empty_cache()


def build_scheduler(choice: SchedulerChoice, checkpoint_config: dict[str, Any]) -> Any:
    """The diffusers scheduler for a choice, on top of the checkpoint's own flow-matching config (its shift carries
    over: as ``flow_shift`` for the multistep solvers)."""
    _, diffusers = import_local_stack()
    scheduler_class = getattr(diffusers, choice.scheduler_class)  # type: ignore[arg-type]
    extra = dict(choice.config)
    if extra.get("use_flow_sigmas"):
        extra["flow_shift"] = checkpoint_config.get("shift", 3.0)
    return scheduler_class.from_config(checkpoint_config, **extra)


# -- running ----------------------------------------------------------------------------------------------------------
def run_seeded(
    torch: Any,
    pipe: Any,
    seed: int,
    device: str,
    call: dict[str, Any],
    cpu_threads: int | None = None,
    on_step_end: Any = None,
) -> Any:
    """One pipeline call made reproducible: the initial noise comes from a generator seeded with ``seed``, and the
    global RNG (which stochastic samplers draw from, because the pipeline never hands them the generator) is seeded
    too, inside ``fork_rng`` so the caller's global random state is left as it was. ``on_step_end``: diffusers'
    ``callback_on_step_end`` (a :class:`~.progress.StepReporter`), or None."""
    devices = [torch.device(device)] if device.startswith("cuda") else []
    threads_before = torch.get_num_threads()
    if cpu_threads:
        torch.set_num_threads(cpu_threads)
    try:
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(seed)
            generator = torch.Generator(device="cpu").manual_seed(seed)
            progress = {"callback_on_step_end": on_step_end} if on_step_end is not None else {}
            return pipe(generator=generator, output_type="pil", **call, **progress).image[0]
    finally:
        if cpu_threads:
            torch.set_num_threads(threads_before)


def start_part_way(scheduler: Any, start_step: int) -> None:
    """Make a single-step flow sampler run only the tail of its schedule, from ``start_step``: the pipeline calls
    ``set_timesteps(steps)`` itself and then loops over ``scheduler.timesteps``, so the tail is cut right there and
    the sampler is told where it begins (diffusers' img2img pipelines do the same with ``set_begin_index``)."""
    if start_step == 0:
        return
    full_set_timesteps = scheduler.set_timesteps

    def set_timesteps(*args: Any, **kwargs: Any) -> None:
        full_set_timesteps(*args, **kwargs)
        scheduler.timesteps = scheduler.timesteps[start_step:]
        scheduler.set_begin_index(start_step)

    scheduler.set_timesteps = set_timesteps


def seed_image_latents(
    torch: Any, pipe: Any, image: PILImage.Image, call: dict[str, Any], start_step: int, seed: int
) -> Any:
    """SDEdit's starting point: the seed image's latents noised to the sigma where the schedule starts,
    ``x = sigma * noise + (1 - sigma) * latents`` (the flow-matching forward process). The noise is drawn exactly as
    the pipeline draws its own, so strength 1 equals text to image with the same seed."""
    from diffusers.image_processor import VaeImageProcessor
    from diffusers.utils.torch_utils import randn_tensor

    width, height = call["width"], call["height"]
    probe = type(pipe.scheduler).from_config(pipe.scheduler.config)
    probe.set_timesteps(call["num_inference_steps"])
    sigma = float(probe.sigmas[start_step])
    vae = pipe.vae
    pixels = VaeImageProcessor(vae_scale_factor=pipe.vae_scale_factor_spatial).preprocess(
        image, height=height, width=width
    )
    with torch.no_grad():
        latents = vae.encode(pixels.to(pipe.device, vae.dtype)).latent_dist.mode() * vae.config.scaling_factor
    latents = latents.unsqueeze(2).permute(0, 2, 3, 4, 1)  # [batch, frames=1, h, w, channels], as the pipeline uses
    dtype = pipe.transformer.dtype
    noise = randn_tensor(
        tuple(latents.shape), generator=torch.Generator("cpu").manual_seed(seed), device=pipe.device, dtype=dtype
    )
    return sigma * noise + (1.0 - sigma) * latents.to(dtype)


# -- images in and out ------------------------------------------------------------------------------------------------
def load_image(field_name: str, image: ImageRef) -> PILImage.Image:
    """Decode an image input; an unreadable one is a request problem (nothing was generated)."""
    from PIL import Image, UnidentifiedImageError

    try:
        return Image.open(io.BytesIO(image.read_bytes())).convert("RGB")
    except (OSError, ValueError, UnidentifiedImageError) as exc:
        problem = FieldProblem(
            field_name, repr(image), "a readable PNG, JPEG or WEBP image", f"could not be read: {exc}"
        )
        raise RequestValidationError([problem]) from exc


def encode_image(image: PILImage.Image, output_format: str, quality: int) -> bytes:
    """Encode a PIL image as the wire's ``outputFormat`` (JPG / PNG / WEBP; quality applies to the lossy two)."""
    buffer = io.BytesIO()
    kwargs: dict[str, Any] = {} if output_format == "PNG" else {"quality": quality}
    # PIL names these formats as the toolkit's format names do, in capitals ("png", "jpeg", "webp" -> "JPEG" ...).
    pil_format = _media.OUTPUT_FORMATS[output_format].upper()
    image.convert("RGB").save(buffer, format=pil_format, **kwargs)
    return buffer.getvalue()


# -- the editing pipeline's processor ---------------------------------------------------------------------------------
def _torchvision_available() -> bool:
    from transformers.utils import is_torchvision_available

    return bool(is_torchvision_available())


def _qwen_processor(tokenizer: Any, config_source: tuple[str, bool] | None = None) -> Any:
    """The editing pipeline needs a Qwen2VLProcessor (text + image). Demo weights save a plain tokenizer, and without
    torchvision transformers cannot build the processor normally (its video processor needs torchvision), so it is
    built around the tokenizer with the PIL image processor; video input is never used here."""
    if hasattr(tokenizer, "image_processor"):
        return tokenizer
    from transformers import Qwen2VLProcessor

    if _torchvision_available():
        from transformers import Qwen2VLImageProcessor, Qwen2VLVideoProcessor

        return Qwen2VLProcessor(
            image_processor=Qwen2VLImageProcessor(), tokenizer=tokenizer, video_processor=Qwen2VLVideoProcessor()
        )
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    image_processor = Qwen2VLImageProcessorPil()
    if config_source is not None:  # keep the checkpoint's image settings (pixel limits) when it has them
        source, local = config_source
        with contextlib.suppress(OSError, ValueError):
            image_processor = Qwen2VLImageProcessorPil.from_pretrained(
                source, subfolder="tokenizer", local_files_only=local
            )
    processor = Qwen2VLProcessor.__new__(Qwen2VLProcessor)
    processor.image_processor = image_processor
    processor.tokenizer = tokenizer
    processor.video_processor = None
    processor.chat_template = None
    processor.image_token, processor.video_token = "<|image_pad|>", "<|video_pad|>"
    processor.image_token_id = tokenizer.convert_tokens_to_ids(processor.image_token)
    processor.video_token_id = tokenizer.convert_tokens_to_ids(processor.video_token)
    return processor
