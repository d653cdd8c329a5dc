"""The local engine: Kandinsky 5 Image Lite through diffusers, on a GPU when there is one, else the CPU.

:class:`LocalBackend` is the thin stateful shell: it holds the loaded pipelines, runs one request at a time under a
lock, times each image and prices it. What to run comes from :mod:`.plan` (pure), how to run it from
:mod:`.pipelines` (diffusers glue), where the weights are from :mod:`.weights`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from ...errors import BackendError, ConfigurationError, KandinskyNBError
from ...planning.pricing import gpu_cost_usd
from ...types import GeneratedImage, Generation, ImageInferenceRequest, ImageInferenceResult
from ..base import Backend, StepCallback
from .caches import CacheRun
from .demo_weights import build_demo_weights
from .lora import LoraRun
from .pipelines import (
    build_scheduler,
    encode_image,
    free_gpu_memory,
    load_image,
    load_pipeline,
    run_seeded,
    seed_image_latents,
    start_part_way,
)
from .plan import DEMO_SCALE, RunPlan, image_seeds, pipeline_call, plan_request, rendered_sizes, result_fields
from .progress import StepReporter
from .stack import ENGINE, import_local_stack
from .weights import resolve_weights

__all__ = ["DEFAULT_GPU_HOURLY_USD", "LocalBackend"]

# What an hour of the machine costs, so local runs get a cost comparable to the cloud's. Roughly what GPU-rental
# clouds asked for one H100 per hour in 2025 (the big clouds charge more); pass gpu_hourly_usd= for your hardware.
DEFAULT_GPU_HOURLY_USD = 2.5


@dataclass
class _Run:
    """What one request's pipeline calls produced: ``images`` as ``(seed, PIL image, seconds)``, and each image's
    cache statistics when a cache ran."""

    pipe: Any
    scheduler: Any
    images: list[tuple[int, Any, float]] = field(default_factory=list)
    cache_stats: list[dict[str, Any]] = field(default_factory=list)
    load_seconds: float = 0.0  # loading the pipeline for this request (a first request's, mostly)


class LocalBackend(Backend):
    """Kandinsky 5.0 Image Lite on this machine, through diffusers.

    ``weights``: a diffusers folder, a hub id, ``"demo"`` or a demo-weights folder (default
    ``$KANDINSKY_NB_WEIGHTS``, else the official checkpoints of :mod:`kandinsky_nb.spec`). ``device``: ``"cuda"``
    when available, else ``"cpu"``. ``demo_scale``: render at this fraction of the requested size (default
    :data:`DEMO_SCALE` for demo weights, 1 otherwise). ``gpu_hourly_usd``: the price of an hour of this machine;
    each image costs its measured seconds at that rate. ``cpu_threads``: torch intra-op threads while generating
    (restored afterwards; default: torch's own setting, 1 for demo weights). ``offload``: keep the weights in CPU
    memory and move each component to the GPU only while it runs (diffusers' model CPU offload), for GPUs with less
    memory than the ~29 GB a bf16 pipeline needs.

    ``demo`` is True on demo weights (their images are noise). Thread-safe: pipeline calls are serialised by a
    lock. Pipelines load on first use.
    """

    name = ENGINE

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
        if offload and not (device or "cuda").startswith("cuda"):
            raise ConfigurationError(
                f"offload=True with device={device!r}: offloading moves model parts to a GPU while they run, so it "
                "needs a CUDA device. Pass device='cuda' (or leave device unset on a GPU machine), or drop offload."
            )
        scale = float(demo_scale if demo_scale is not None else (DEMO_SCALE if self.demo else 1.0))
        if not 0 < scale <= 1:
            raise ConfigurationError(
                f"demo_scale={demo_scale!r}: the fraction of the requested size to render must be in (0, 1]. "
                f"Pass e.g. demo_scale={DEMO_SCALE} for quick runs, or 1 for full size."
            )
        self.scale = scale
        self.cpu_threads = cpu_threads
        self.offload = offload
        self.gpu_hourly_usd = float(gpu_hourly_usd)
        self._device = device
        self._lock = threading.Lock()
        self._pipelines: dict[str, Any] = {}
        # Each checkpoint's own scheduler config (its flow shift), kept because pipe.scheduler is swapped per request.
        self._scheduler_configs: dict[str, dict[str, Any]] = {}
        self._closed = False

    @classmethod
    def from_demo_weights(
        cls, folder: str | os.PathLike[str] | None = None, *, scale: float = DEMO_SCALE, **kwargs: Any
    ) -> LocalBackend:
        """The engine on demo weights (built offline on first use), at ``scale`` of the requested size."""
        return cls(build_demo_weights(folder), demo_scale=scale, **kwargs)

    def __repr__(self) -> str:
        demo = ", demo weights (images are noise)" if self.demo else ""
        return f"LocalBackend({self.weights.t2i!r}, device={self._device or 'auto'!r}, scale={self.scale:g}{demo})"

    # -- loading ---------------------------------------------------------------------------------------------------
    @property
    def device(self) -> str:
        if self._device is None:
            torch, _ = import_local_stack()
            self._device = "cuda" if torch.cuda.is_available() else "cpu"
        return self._device

    def pipeline(self, kind: str = "t2i") -> Any:
        """The loaded diffusers pipeline (``"t2i"`` or ``"i2i"``), loading it on first use. Call under the lock or
        from a single thread."""
        if self._closed:
            raise BackendError("This LocalBackend is closed; create a new one to generate again.")
        if kind not in self._pipelines:
            if self.device.startswith("cuda") and self._pipelines:
                # Each real pipeline holds a 6B transformer plus an 8B Qwen2.5-VL text encoder (~29 GB in bf16):
                # keep one on the GPU, so switching between text to image and editing reloads instead of running
                # out of memory.
                self._release_pipelines()
            torch, _ = import_local_stack()
            # bf16 on GPU, given at load time: pipe.to(bfloat16) after an fp32 load breaks the time embedding.
            dtype = torch.bfloat16 if self.device.startswith("cuda") and not self.demo else torch.float32
            pipe = load_pipeline(
                kind,
                self.weights.for_kind(kind),
                device=self.device,
                dtype=dtype,
                offload=self.offload,
                resolutions=rendered_sizes(self.scale),
            )
            self._scheduler_configs[kind] = dict(pipe.scheduler.config)
            self._pipelines[kind] = pipe
        return self._pipelines[kind]

    def _release_pipelines(self) -> None:
        self._pipelines.clear()
        if self.device.startswith("cuda"):
            free_gpu_memory()

    def scheduler_for(self, plan: RunPlan) -> Any:
        """A fresh diffusers scheduler for the plan's choice, on the config of the checkpoint that runs it (loading
        that pipeline if needed)."""
        self.pipeline(plan.kind)
        return build_scheduler(plan.scheduler, self._scheduler_configs[plan.kind])

    # -- generation ------------------------------------------------------------------------------------------------
    def check(self, request: ImageInferenceRequest) -> None:
        """Raise UnsupportedByEngineError now if this engine would refuse the request (nothing is loaded or run)."""
        plan_request(request)

    def generate(self, request: ImageInferenceRequest) -> Generation:
        return self.generate_with_progress(request, None)

    async def agenerate_with_progress(self, request: ImageInferenceRequest, on_step: StepCallback | None) -> Generation:
        # The pipeline runs in a worker thread, so on_step is called there (the caller hops to its own loop).
        return await asyncio.to_thread(self.generate_with_progress, request, on_step)

    def generate_with_progress(self, request: ImageInferenceRequest, on_step: StepCallback | None) -> Generation:
        """:meth:`generate`, calling ``on_step(step, total, preview)`` after each denoising step of each image, with a
        latent preview (a PIL image, an eighth of the size a side) every few steps; see :mod:`.progress`."""
        plan = plan_request(request)
        torch, _ = import_local_stack()
        seeds = image_seeds(request.seed, request.effective("numberResults"))
        call = pipeline_call(request, self.scale)
        source = None
        if plan.mode == "edit":
            source = load_image("referenceImages[0]", request.referenceImages[0])  # type: ignore[index]
        elif plan.mode == "img2img":
            source = load_image("seedImage", request.seedImage)  # type: ignore[arg-type]
        started = time.perf_counter()
        with self._lock:
            try:
                reporter = StepReporter(on_step, len(seeds)) if on_step is not None else None
                run = self._run(torch, plan, call, seeds, source, reporter)
            except KandinskyNBError:
                raise
            except Exception as exc:
                raise BackendError(
                    f"The local engine failed while generating: {type(exc).__name__}: {exc}. Check the request's "
                    "settings; if it persists, report it with Generation.details of a similar successful run."
                ) from exc
        seconds = time.perf_counter() - started
        images = [self._image(request, image, seed, took) for seed, image, took in run.images]
        return Generation(
            request=request,
            images=images,
            engine=self.name,
            latency_s=seconds,
            demo=self.demo,
            response=[image.result.model_dump(exclude_none=True) for image in images],
            details=self._details(plan, run, call, seeds, seconds),
        )

    def _run(
        self,
        torch: Any,
        plan: RunPlan,
        call: dict[str, Any],
        seeds: list[int],
        source: Any,
        reporter: StepReporter | None = None,
    ) -> _Run:
        """The pipeline calls of one request, one per seed, each timed. Call under the lock."""
        loading = time.perf_counter()
        pipe = self.pipeline(plan.kind)
        scheduler = self.scheduler_for(plan)
        if plan.mode == "img2img":
            start_part_way(scheduler, plan.start_step)
        pipe.scheduler = scheduler
        run = _Run(pipe, scheduler, load_seconds=time.perf_counter() - loading)
        with LoraRun(pipe, list(plan.loras)) if plan.loras else contextlib.nullcontext():
            for seed in seeds:
                image_call = dict(call)
                if plan.mode == "edit":
                    image_call["image"] = source
                elif plan.mode == "img2img":
                    image_call["latents"] = seed_image_latents(torch, pipe, source, call, plan.start_step, seed)
                t0 = time.perf_counter()
                if plan.cache is not None:
                    steps, guidance = call["num_inference_steps"], call["guidance_scale"]
                    with CacheRun(pipe, plan.cache, steps, guidance, first_step=plan.start_step) as cache:
                        image = run_seeded(torch, pipe, seed, self.device, image_call, self.cpu_threads, reporter)
                    run.cache_stats.append(cache.stats())
                else:
                    image = run_seeded(torch, pipe, seed, self.device, image_call, self.cpu_threads, reporter)
                run.images.append((seed, image, time.perf_counter() - t0))
        return run

    def _details(
        self, plan: RunPlan, run: _Run, call: dict[str, Any], seeds: list[int], seconds: float
    ) -> dict[str, Any]:
        """What ran, as ``Generation.details``: enough to reproduce the image with diffusers alone."""
        per_image = [took for _, _, took in run.images]
        scheduler = run.scheduler
        details = {
            # ``seconds``: the whole request (a first request includes loading the pipeline); ``gpu_seconds``: the
            # pipeline calls only, what each image's cost is computed from.
            "seconds": seconds,
            "gpu_seconds": sum(per_image),
            "load_seconds": run.load_seconds,
            "seconds_per_image": per_image,
            "device": self.device,
            "dtype": str(run.pipe.transformer.dtype).removeprefix("torch."),
            "pipeline": type(run.pipe).__name__,
            "checkpoint": self.weights.for_kind(plan.kind),
            "demo": self.demo,
            "scale": self.scale,
            "pixel_size": [call["width"], call["height"]],
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
            "cache": run.cache_stats[0] | {"per_image": run.cache_stats} if run.cache_stats else None,
            "gpu_hourly_usd": self.gpu_hourly_usd,
        }
        if plan.mode == "img2img":
            details["strength"] = plan.strength
            details["start_step"] = plan.start_step
        return details

    def _image(self, request: ImageInferenceRequest, image: Any, seed: int, seconds: float) -> GeneratedImage:
        """One encoded image and its result, priced at its measured seconds."""
        output_format = request.effective("outputFormat")
        data = encode_image(image, output_format, request.effective("outputQuality"))
        result = ImageInferenceResult(
            taskUUID=request.taskUUID,
            imageUUID=str(uuid.uuid4()),
            seed=seed,
            cost=gpu_cost_usd(seconds, self.gpu_hourly_usd),
            **result_fields(request.effective("outputType"), output_format, data),
        )
        return GeneratedImage(result=result, data=data)

    # -- lifetime --------------------------------------------------------------------------------------------------
    def close(self) -> None:
        with self._lock:
            if self._pipelines:
                self._release_pipelines()
            self._closed = True

    async def aclose(self) -> None:
        # close() waits for the lock a running generation holds: wait in a worker thread, never on the event loop.
        await asyncio.to_thread(self.close)
