"""The local engine: Kandinsky 5 Image Lite through diffusers, on a GPU when there is one, else the CPU.

Decisions (which scheduler, which pixel size, which seeds, what the result fields hold) are plain functions at the
top; :class:`LocalBackend` is the thin shell that loads pipelines, runs them under a lock and times them.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import io
import os
import secrets
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ... import spec
from ...errors import (
    BackendError,
    ConfigurationError,
    FieldProblem,
    KandinskyNBError,
    MissingDependencyError,
    RequestValidationError,
    UnsupportedByEngineError,
)
from ...types import GeneratedImage, Generation, ImageInferenceRequest, ImageInferenceResult, ImageRef
from .caches import CachePlan, CacheRun, cache_plan
from .demo_weights import PIPELINES, build_demo_weights, default_demo_folder, is_demo_weights
from .lora import LoraRun, LoraUse, lora_plan
from .schedulers import ENGINE, SchedulerChoice, local_scheduler

if TYPE_CHECKING:
    from PIL import Image as PILImage

__all__ = [
    "DEFAULT_GPU_HOURLY_USD",
    "DEMO_SCALE",
    "LocalBackend",
    "WeightsLocation",
    "encode_image",
    "image_seeds",
    "import_local_stack",
    "resolve_weights",
    "scaled_size",
]

# What an hour of the machine costs, so local runs get a cost comparable to the cloud's. Roughly what GPU-rental
# clouds asked for one H100 per hour in 2025 (the big clouds charge more); pass gpu_hourly_usd= for your hardware.
DEFAULT_GPU_HOURLY_USD = 2.5
# Demo weights run at an eighth of the requested size: every supported size is a multiple of 128 pixels, so the
# eighth keeps the exact aspect ratio and stays a multiple of 16 (VAE x8 times the transformer's 2x2 patches).
DEMO_SCALE = 1 / 8
# Width and height must be multiples of this: the VAE downsamples by 8 and the transformer patches 2x2 latents.
PIXEL_MULTIPLE = 16
_PIL_FORMATS = {"JPG": "JPEG", "PNG": "PNG", "WEBP": "WEBP"}
_MIME = {"JPG": "image/jpeg", "PNG": "image/png", "WEBP": "image/webp"}


def import_local_stack(feature: str = "The local engine") -> tuple[Any, Any]:
    """``(torch, diffusers)``, or MissingDependencyError naming the ``local`` extra."""
    try:
        import diffusers
        import torch
    except ImportError as exc:
        raise MissingDependencyError(feature, "local", exc.name) from exc
    return torch, diffusers


# ----------------------------------------------------------------------------------------------------------------------
# Pure decisions
# ----------------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class WeightsLocation:
    """Where the two pipelines come from: a local diffusers folder or a hub id each. ``demo`` for demo weights."""

    t2i: str
    i2i: str
    demo: bool = False

    @property
    def label(self) -> str:
        return self.t2i


def resolve_weights(
    weights: str | os.PathLike[str] | None, i2i_weights: str | os.PathLike[str] | None = None
) -> WeightsLocation:
    """Turn the ``weights`` argument (or ``$KANDINSKY_NB_WEIGHTS``) into a :class:`WeightsLocation`.

    Accepted: ``"demo"`` (demo weights in the toolkit folder), a demo-weights folder, a folder with ``t2i/`` and
    ``i2i/`` diffusers pipelines, one diffusers pipeline folder (text to image), or a hub id. Unset means the
    official checkpoints on the Hugging Face hub.
    """
    raw = weights if weights is not None else os.environ.get("KANDINSKY_NB_WEIGHTS") or None
    if raw is None:
        return WeightsLocation(spec.LOCAL_T2I_CHECKPOINT, str(i2i_weights or spec.LOCAL_I2I_CHECKPOINT))
    if str(raw) == "demo":
        raw = default_demo_folder()
    path = Path(raw).expanduser()
    _require_existing_if_path("weights", raw)
    if i2i_weights is not None:
        _require_existing_if_path("i2i_weights", i2i_weights)
    if path.is_dir():
        if is_demo_weights(path) or all((path / name / "model_index.json").is_file() for name in PIPELINES):
            return WeightsLocation(str(path / "t2i"), str(i2i_weights or path / "i2i"), demo=is_demo_weights(path))
        return WeightsLocation(str(path), str(i2i_weights or spec.LOCAL_I2I_CHECKPOINT))
    return WeightsLocation(str(raw), str(i2i_weights or spec.LOCAL_I2I_CHECKPOINT))


def _looks_like_a_path(raw: str | os.PathLike[str]) -> bool:
    """A hub id is ``owner/name``; anything absolute, relative-looking or deeper is meant as a folder."""
    text = os.fspath(raw)
    return (
        isinstance(raw, Path)
        or text.startswith(("/", ".", "~"))
        or text.count("/") > 1
        or os.sep in text.replace("/", "")
    )


def _require_existing_if_path(argument: str, raw: str | os.PathLike[str]) -> None:
    if _looks_like_a_path(raw) and not Path(raw).expanduser().is_dir():
        raise ConfigurationError(
            f"{argument}={os.fspath(raw)!r} is not a folder. Give a diffusers pipeline folder, a hub id such as "
            f"{spec.LOCAL_T2I_CHECKPOINT!r}, or 'demo' for the offline demo weights (kandinsky-nb weights build)."
        )


def scaled_size(width: int, height: int, scale: float) -> tuple[int, int]:
    """The pixel size actually rendered for a requested size at ``scale`` (multiples of 16, at least 16)."""

    def one(side: int) -> int:
        return max(PIXEL_MULTIPLE, round(side * scale / PIXEL_MULTIPLE) * PIXEL_MULTIPLE)

    return one(width), one(height)


def image_seeds(seed: int | None, count: int) -> list[int]:
    """Seeds of the ``count`` images: ``seed, seed+1, ...``; with no seed one is drawn in the unsigned 32-bit range,
    as Runware does. Image i of a request therefore equals a single-image request with seed+i."""
    first = secrets.randbelow(spec.RANDOM_SEED_MAX + 1) if seed is None else seed
    # Wrap past the largest valid seed so every reported seed can be sent again.
    return [(first + i) % (spec.SEED_MAX + 1) for i in range(count)]


def encode_image(image: PILImage.Image, output_format: str, quality: int) -> bytes:
    """Encode a PIL image as JPG / PNG / WEBP (quality applies to the lossy two)."""
    buffer = io.BytesIO()
    kwargs: dict[str, Any] = {} if output_format == "PNG" else {"quality": quality}
    image.convert("RGB").save(buffer, format=_PIL_FORMATS[output_format], **kwargs)
    return buffer.getvalue()


def result_payload(output_type: str, output_format: str, data: bytes) -> dict[str, Any]:
    """The result fields for ``outputType``. A local engine has no URL to give: URL output returns the bytes only."""
    if output_type == "base64Data":
        return {"imageBase64Data": base64.b64encode(data).decode("ascii")}
    if output_type == "dataURI":
        return {"imageDataURI": f"data:{_MIME[output_format]};base64," + base64.b64encode(data).decode("ascii")}
    return {}


@dataclass(frozen=True)
class RunPlan:
    """Everything the engine decided about a request before loading or running anything.

    ``mode``: ``"text"`` (text to image), ``"edit"`` (instruction editing of ``referenceImages[0]`` with the I2I
    pipeline) or ``"img2img"`` (``seedImage`` + ``strength``: the text-to-image pipeline started part-way through its
    schedule from the noised seed image, SDEdit-style; ``start_step`` of ``steps`` is where it starts).
    """

    mode: str
    scheduler: SchedulerChoice
    loras: tuple[LoraUse, ...] = ()
    cache: CachePlan | None = None
    strength: float | None = None
    start_step: int = 0

    @property
    def kind(self) -> str:
        return "i2i" if self.mode == "edit" else "t2i"


def plan_request(request: ImageInferenceRequest) -> RunPlan:
    """Decide how to run a request, or raise UnsupportedByEngineError for anything this engine cannot honour."""
    if request.safety is not None and request.safety.checkContent:
        raise UnsupportedByEngineError(
            "safety.checkContent",
            True,
            ENGINE,
            "the local engine has no content checker, so it could not honestly report NSFWContent",
            "safety.checkContent=false, or the Runware engine for checked content",
        )
    choice = local_scheduler(request.scheduler)
    loras = tuple(lora_plan(request))
    cache = cache_plan(request)
    if request.referenceImages and request.seedImage is not None:
        raise UnsupportedByEngineError(
            "seedImage",
            "image",
            ENGINE,
            "the local engine either edits referenceImages (instruction editing) or starts from a seedImage, not both",
            "referenceImages alone (editing) or seedImage with strength alone (image to image)",
        )
    if request.referenceImages:
        if len(request.referenceImages) > 1:
            raise UnsupportedByEngineError(
                "referenceImages",
                f"{len(request.referenceImages)} images",
                ENGINE,
                "the Kandinsky 5 editing pipeline takes exactly one source image",
                "one reference image",
            )
        _check_readable("referenceImages[0]", request.referenceImages[0])
        return RunPlan("edit", choice, loras, cache)
    if request.seedImage is not None:
        _check_readable("seedImage", request.seedImage)
        if not choice.partial_schedule:
            raise UnsupportedByEngineError(
                "scheduler",
                choice.name,
                ENGINE,
                "image to image (seedImage) starts part-way through the schedule, which the multistep solvers do not "
                "support here (they size their orders from the whole schedule)",
                "'Euler' or 'Euler a' with seedImage",
            )
        steps = request.effective("steps")
        strength = float(request.effective("strength"))
        # Like diffusers' img2img pipelines: strength is the fraction of the schedule that runs.
        start_step = steps - int(steps * strength)
        return RunPlan("img2img", choice, loras, cache, strength=strength, start_step=start_step)
    return RunPlan("text", choice, loras, cache)


def _check_readable(field_name: str, image: ImageRef) -> None:
    if image.kind in ("uuid", "url"):
        raise UnsupportedByEngineError(
            field_name,
            str(image.value),
            ENGINE,
            f"a {image.kind} names an image somewhere else; the local engine works offline and reads image data only",
            "a file path, bytes, a PIL image, a data URI or base64 data",
        )


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


# ----------------------------------------------------------------------------------------------------------------------
# The engine
# ----------------------------------------------------------------------------------------------------------------------
class LocalBackend:
    """Kandinsky 5.0 Image Lite on this machine, through diffusers.

    ``weights``: a diffusers folder, a hub id, ``"demo"`` or a demo-weights folder (default
    ``$KANDINSKY_NB_WEIGHTS``, else the official checkpoints of :mod:`kandinsky_nb.spec`). ``device``: ``"cuda"``
    when available, else ``"cpu"``. ``demo_scale``: render at this fraction of the requested size (default
    :data:`DEMO_SCALE` for demo weights, 1 otherwise). ``gpu_hourly_usd``: the price of an hour of this machine;
    each image costs its measured seconds at that rate. ``cpu_threads``: torch intra-op threads while generating
    (restored afterwards; default: torch's own setting, 1 for demo weights). ``offload``: keep the weights in CPU
    memory and move each component to the GPU only while it runs (diffusers' model CPU offload), for GPUs with less
    memory than the ~29 GB a bf16 pipeline needs.

    Thread-safe: pipeline calls are serialised by a lock. Pipelines load on first use.
    """

    name = "local"

    def __init__(
        self,
        weights: str | os.PathLike[str] | None = None,
        *,
        i2i_weights: str | os.PathLike[str] | None = None,
        device: str | None = None,
        demo_scale: float | None = None,
        gpu_hourly_usd: float = DEFAULT_GPU_HOURLY_USD,
        cpu_threads: int | None = None,
        offload: bool = False,
    ) -> None:
        self.weights = resolve_weights(weights, i2i_weights)
        self.demo = self.weights.demo
        if self.demo:
            # The tiny demo model is faster on the CPU than a GPU round trip, and on one thread: more gain nothing,
            # and on a busy machine (CI, Binder, notebooks side by side) competing intra-op threads made it ~8x
            # slower (measured 0.22 s vs 1.7 s per image).
            device = device or "cpu"
            cpu_threads = cpu_threads or 1
        self.cpu_threads = cpu_threads
        if offload and not (device or "cuda").startswith("cuda"):
            raise ConfigurationError("offload=True moves model parts to a GPU while they run; it needs device='cuda'.")
        self.offload = offload
        self.scale = float(demo_scale if demo_scale is not None else (DEMO_SCALE if self.demo else 1.0))
        if not 0 < self.scale <= 1:
            raise ValueError(f"demo_scale must be in (0, 1], not {self.scale}; use e.g. {DEMO_SCALE}")
        self.gpu_hourly_usd = float(gpu_hourly_usd)
        self._device = device
        self._lock = threading.Lock()
        self._pipelines: dict[str, Any] = {}
        # Each checkpoint's own scheduler config (its flow shift), kept because pipe.scheduler is swapped per request.
        self._scheduler_configs: dict[str, dict[str, Any]] = {}
        self._closed = False

    @classmethod
    def demo(cls, folder: str | os.PathLike[str] | None = None, *, scale: float = DEMO_SCALE, **kwargs: Any):
        """The engine on demo weights (built offline on first use), at ``scale`` of the requested size."""
        return cls(build_demo_weights(folder), demo_scale=scale, **kwargs)

    def __repr__(self) -> str:
        demo = ", demo weights (images are noise)" if self.demo else ""
        return f"LocalBackend({self.weights.label!r}, device={self._device or 'auto'!r}, scale={self.scale:g}{demo})"

    # -- loading ---------------------------------------------------------------------------------------------------
    @property
    def device(self) -> str:
        if self._device is None:
            torch, _ = import_local_stack()
            self._device = "cuda" if torch.cuda.is_available() else "cpu"
        return self._device

    def _dtype(self, torch: Any) -> Any:
        # bf16 on GPU, given at load time: pipe.to(bfloat16) after an fp32 load breaks the time embedding.
        return torch.bfloat16 if self.device.startswith("cuda") and not self.demo else torch.float32

    def pipeline(self, kind: str = "t2i") -> Any:
        """The loaded diffusers pipeline (``"t2i"`` or ``"i2i"``), loading it on first use. Call under the lock or
        from a single thread."""
        if self._closed:
            raise BackendError("this LocalBackend is closed; create a new one")
        if kind not in self._pipelines:
            if self.device.startswith("cuda") and self._pipelines:
                # Each real pipeline holds a 6B transformer plus an 8B Qwen2.5-VL text encoder (~29 GB in bf16):
                # keep one on the GPU, so switching between text to image and editing reloads instead of running
                # out of memory.
                self._release_pipelines()
            self._pipelines[kind] = self._load(kind)
        return self._pipelines[kind]

    def _release_pipelines(self) -> None:
        self._pipelines.clear()
        if self.device.startswith("cuda"):
            import gc

            import torch

            gc.collect()
            torch.cuda.empty_cache()

    def _load(self, kind: str) -> Any:
        torch, diffusers = import_local_stack()
        source = self.weights.t2i if kind == "t2i" else self.weights.i2i
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
                pipe = pipeline_class.from_pretrained(source, dtype=self._dtype(torch), local_files_only=local, **extra)
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
        if self.offload:
            # Components move to the GPU only while they run: a ~29 GB bf16 pipeline (6B transformer, 8B
            # Qwen2.5-VL) then fits a smaller card, at some speed.
            pipe.enable_model_cpu_offload(device=self.device)
        else:
            pipe.to(self.device)
        # The pipeline snaps any other size to its 7 native ~1 MP sizes; list the sizes this engine renders.
        pipe.resolutions = list(dict.fromkeys(scaled_size(s.width, s.height, self.scale) for s in spec.SIZES))
        pipe.set_progress_bar_config(disable=True)
        self._scheduler_configs[kind] = dict(pipe.scheduler.config)
        return pipe

    def scheduler_for(self, choice: SchedulerChoice, kind: str = "t2i") -> Any:
        """Build the diffusers scheduler for a choice, on top of the checkpoint's own flow-matching config (its
        shift carries over: ``flow_shift`` for the multistep solvers). Loads the pipeline if needed."""
        _, diffusers = import_local_stack()
        self.pipeline(kind)
        base = self._scheduler_configs[kind]
        scheduler_class = getattr(diffusers, choice.scheduler_class)  # type: ignore[arg-type]
        extra = dict(choice.config)
        if extra.get("use_flow_sigmas"):
            extra["flow_shift"] = base.get("shift", 3.0)
        return scheduler_class.from_config(base, **extra)

    # -- generation ------------------------------------------------------------------------------------------------
    def check(self, request: ImageInferenceRequest) -> None:
        """Raise UnsupportedByEngineError now if this engine would refuse the request (nothing is loaded or run)."""
        plan_request(request)

    def generate(self, request: ImageInferenceRequest) -> Generation:
        plan = plan_request(request)
        torch, _ = import_local_stack()
        seeds = image_seeds(request.seed, request.effective("numberResults"))
        width, height = scaled_size(request.width, request.height, self.scale)
        steps = request.effective("steps")
        call: dict[str, Any] = {
            "prompt": request.positivePrompt,
            "negative_prompt": request.negativePrompt,
            "height": height,
            "width": width,
            "num_inference_steps": steps,
            "guidance_scale": float(request.effective("CFGScale")),
        }
        source = None
        if plan.mode == "edit":
            source = load_image("referenceImages[0]", request.referenceImages[0])  # type: ignore[index]
        elif plan.mode == "img2img":
            source = load_image("seedImage", request.seedImage)  # type: ignore[arg-type]
        started = time.perf_counter()
        outputs: list[tuple[int, Any, float]] = []
        cache_stats: list[dict[str, Any]] = []
        with self._lock:
            try:
                pipe = self.pipeline(plan.kind)
                scheduler = self.scheduler_for(plan.scheduler, plan.kind)
                if plan.mode == "img2img":
                    start_part_way(scheduler, plan.start_step)
                pipe.scheduler = scheduler
                with LoraRun(pipe, list(plan.loras)) if plan.loras else contextlib.nullcontext():
                    for seed in seeds:
                        image_call = dict(call)
                        if plan.mode == "edit":
                            image_call["image"] = source
                        elif plan.mode == "img2img":
                            image_call["latents"] = seed_image_latents(torch, pipe, source, call, plan, seed)
                        t0 = time.perf_counter()
                        if plan.cache is not None:
                            cache = CacheRun(
                                pipe, plan.cache, steps, call["guidance_scale"], first_step=plan.start_step
                            )
                            with cache as run:
                                image = run_seeded(torch, pipe, seed, self.device, image_call, self.cpu_threads)
                            cache_stats.append(run.stats())
                        else:
                            image = run_seeded(torch, pipe, seed, self.device, image_call, self.cpu_threads)
                        outputs.append((seed, image, time.perf_counter() - t0))
            except KandinskyNBError:
                raise
            except Exception as exc:
                raise BackendError(
                    f"The local engine failed while generating: {type(exc).__name__}: {exc}. Check the request's "
                    "settings; if it persists, report it with Generation.details of a similar successful run."
                ) from exc
        seconds = time.perf_counter() - started
        output_format = request.effective("outputFormat")
        quality = request.effective("outputQuality")
        output_type = request.effective("outputType")
        images = [
            self._image(request, image, seed, took, output_format, quality, output_type)
            for seed, image, took in outputs
        ]
        per_image = [took for _, _, took in outputs]
        details = {
            # ``seconds``: the whole request (a first request includes loading the pipeline); ``gpu_seconds``: the
            # pipeline calls only, what each image's cost is computed from.
            "seconds": seconds,
            "gpu_seconds": sum(per_image),
            "seconds_per_image": per_image,
            "device": self.device,
            "dtype": str(pipe.transformer.dtype).removeprefix("torch."),
            "pipeline": type(pipe).__name__,
            "checkpoint": self.weights.t2i if plan.kind == "t2i" else self.weights.i2i,
            "demo": self.demo,
            "scale": self.scale,
            "pixel_size": [width, height],
            "mode": plan.mode,
            "scheduler": {
                "name": plan.scheduler.name,
                "class": type(scheduler).__name__,
                "config": {k: v for k, v in scheduler.config.items() if k != "_use_default_values"},
                "remapped": plan.scheduler.remapped,
                "stochastic": plan.scheduler.stochastic,
                "note": plan.scheduler.note,
            },
            "call": dict(call),
            "seeds": seeds,
            "lora": [use.describe() for use in plan.loras],
            "cache": cache_stats[0] | {"per_image": cache_stats} if cache_stats else None,
            "gpu_hourly_usd": self.gpu_hourly_usd,
        }
        if plan.mode == "img2img":
            details["strength"] = plan.strength
            details["start_step"] = plan.start_step
        return Generation(
            request=request,
            images=images,
            engine=self.name,
            latency_s=seconds,
            demo=self.demo,
            response=[image.result.model_dump(exclude_none=True) for image in images],
            details=details,
        )

    def _image(
        self,
        request: ImageInferenceRequest,
        image: PILImage.Image,
        seed: int,
        seconds: float,
        output_format: str,
        quality: int,
        output_type: str,
    ) -> GeneratedImage:
        data = encode_image(image, output_format, quality)
        result = ImageInferenceResult(
            taskUUID=request.taskUUID,
            imageUUID=str(uuid.uuid4()),
            seed=seed,
            cost=seconds * self.gpu_hourly_usd / 3600,
            **result_payload(output_type, output_format, data),
        )
        return GeneratedImage(result=result, data=data)

    async def agenerate(self, request: ImageInferenceRequest) -> Generation:
        return await asyncio.to_thread(self.generate, request)

    async def aresume(self, request: ImageInferenceRequest) -> Generation | None:
        # Nothing survives a restart of a local engine: there is no task to look up, so the caller may submit.
        return None

    def close(self) -> None:
        with self._lock:
            if self._pipelines:
                self._release_pipelines()
            self._closed = True

    async def aclose(self) -> None:
        await asyncio.to_thread(self.close)


@contextlib.contextmanager
def quiet_progress(enabled: bool = True) -> Iterator[None]:
    """Hide diffusers'/transformers' progress bars (loading a few MB from disk needs none), then restore them."""
    if not enabled:
        yield
        return
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    before = diffusers_logging.is_progress_bar_enabled(), transformers_logging.is_progress_bar_enabled()
    diffusers_logging.disable_progress_bar()
    transformers_logging.disable_progress_bar()
    try:
        yield
    finally:
        if before[0]:
            diffusers_logging.enable_progress_bar()
        if before[1]:
            transformers_logging.enable_progress_bar()


def run_seeded(
    torch: Any, pipe: Any, seed: int, device: str, call: dict[str, Any], cpu_threads: int | None = None
) -> Any:
    """One pipeline call made reproducible: the initial noise comes from a generator seeded with ``seed``, and the
    global RNG (which stochastic samplers draw from, because the pipeline never hands them the generator) is seeded
    too, inside ``fork_rng`` so the caller's global random state is left as it was."""
    devices = [torch.device(device)] if device.startswith("cuda") else []
    threads_before = torch.get_num_threads()
    if cpu_threads:
        torch.set_num_threads(cpu_threads)
    try:
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(seed)
            generator = torch.Generator(device="cpu").manual_seed(seed)
            return pipe(generator=generator, output_type="pil", **call).image[0]
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
    torch: Any, pipe: Any, image: PILImage.Image, call: dict[str, Any], plan: RunPlan, seed: int
) -> Any:
    """SDEdit's starting point: the seed image's latents noised to the sigma where the schedule starts,
    ``x = sigma * noise + (1 - sigma) * latents`` (the flow-matching forward process). The noise is drawn exactly as
    the pipeline draws its own, so strength 1 equals text to image with the same seed."""
    from diffusers.image_processor import VaeImageProcessor
    from diffusers.utils.torch_utils import randn_tensor

    width, height = call["width"], call["height"]
    probe = type(pipe.scheduler).from_config(pipe.scheduler.config)
    probe.set_timesteps(call["num_inference_steps"])
    sigma = float(probe.sigmas[plan.start_step])
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
