"""``acceleratorOptions`` on the local engine: diffusers' cache hooks made to work on the Kandinsky 5 transformer.

As shipped (diffusers 0.42.1) the hooks do not work on this model, for three reasons the project's reference notes
measured: the Kandinsky 5 pipelines never open ``transformer.cache_context(...)`` (stateful hooks then fail, or mix
the cond and uncond passes of CFG), First Block Cache reads a hard-coded ``hidden_states`` argument while the block
calls it ``visual_embed``, and TaylorSeer's default module patterns match nothing here. This module fixes all three
and maps the model page's three cache families:

| request      | diffusers hook                  | knobs                                                               |
| ------------ | ------------------------------- | ------------------------------------------------------------------- |
| ``fbCache``  | First Block Cache               | ``fbCacheThreshold``; window; ``cacheMaxConsecutiveSteps``          |
| ``teaCache`` | MagCache (remapped: diffusers has no TeaCache; MagCache is its magnitude-based successor and uses the model's official ratios) | ``teaCacheDistance`` as the error threshold; window; max consecutive |
| ``dbCache``  | TaylorSeer                      | ``dbCacheSkipInterval`` (capped by ``cacheMaxConsecutiveSteps``); window. ``dbCacheThreshold`` is refused: TaylorSeer refreshes on a fixed interval and has no threshold |

The plan (:func:`cache_plan`) is pure; :class:`CacheRun` applies it to a pipeline for one call.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Any

from ... import spec
from ...errors import UnsupportedByEngineError
from ...types import ImageInferenceRequest
from .stack import ENGINE

__all__ = ["OFFICIAL_T2I_MAG_RATIOS", "CachePlan", "CacheRun", "cache_plan"]

# The modules TaylorSeer approximates: attention and feed-forward of every visual block.
TAYLORSEER_MODULES = r"visual_transformer_blocks\.\d+\.(self_attention|cross_attention|feed_forward)"
# TaylorSeer needs two full computations before it can extrapolate (a first-order difference).
TAYLORSEER_WARMUP_STEPS = 2

# MagCache ratios published with the official Kandinsky 5 Image Lite T2I config (configs/k5_lite_t2i_sft_hd.yaml):
# 50 steps, cond and uncond interleaved. Checkpoint-specific; diffusers interpolates them to other step counts.
OFFICIAL_T2I_MAG_RATIOS: tuple[float, ...] = (
    0.83479, 0.82401, 1.04218, 1.04684, 1.03432, 1.03566, 1.02943, 1.03087, 1.02626, 1.02726,
    1.01373, 1.01395, 1.01837, 1.01873, 1.01712, 1.01791, 1.01327, 1.01376, 1.01112, 1.01102,
    1.01204, 1.01224, 1.00652, 1.0078, 1.01196, 1.01195, 1.00934, 1.00964, 1.0069, 1.00723,
    1.00831, 1.00917, 1.00588, 1.00604, 1.00568, 1.0066, 1.00988, 1.01066, 1.00858, 1.00936,
    1.00474, 1.00465, 1.00343, 1.0047, 1.0002, 0.99511, 1.00565, 1.01499, 1.00461, 1.00507,
    1.00524, 1.00542, 1.00464, 1.00471, 0.99872, 0.99837, 1.00761, 1.00841, 1.00167, 1.00196,
    1.00581, 1.00603, 1.00226, 1.003, 1.00387, 1.00391, 1.00357, 1.00408, 1.0014, 1.00164,
    0.99996, 1.00029, 1.0055, 1.00601, 0.99761, 0.99761, 1.00028, 1.00061, 1.00353, 1.0035,
    1.00035, 1.00058, 1.00196, 1.00229, 0.99987, 1.00022, 1.00144, 1.00165, 0.99946, 0.99941,
    0.99732, 0.99749, 0.99646, 0.99507, 0.99323, 0.99088, 1.00579, 0.99927,
)  # fmt: skip


@dataclass(frozen=True)
class CachePlan:
    """One cache for one request: the family asked for, the diffusers hook that serves it, and its settings."""

    family: str
    hook: str
    threshold: float | None
    window: tuple[int, int]
    max_consecutive: int
    interval: int | None = None
    note: str = ""
    settings: dict[str, Any] = field(default_factory=dict)

    def describe(self) -> dict[str, Any]:
        return {
            "family": self.family,
            "hook": self.hook,
            "threshold": self.threshold,
            "window": list(self.window),
            "max_consecutive_steps": self.max_consecutive,
            "interval": self.interval,
            "note": self.note,
        }


def cache_plan(request: ImageInferenceRequest) -> CachePlan | None:
    """The cache a request asks for, mapped to a working hook, or UnsupportedByEngineError. None: no cache."""
    options = request.acceleratorOptions
    family = options.enabled_cache if options is not None else None
    if options is None or family is None:
        return None
    steps = request.effective("steps")
    window = options.window(steps)
    max_consecutive = options.cacheMaxConsecutiveSteps or int(
        spec.LIMITS["acceleratorOptions.cacheMaxConsecutiveSteps"].default
    )
    if family == "fbCache":
        threshold = _value(options.fbCacheThreshold, "acceleratorOptions.fbCacheThreshold")
        return CachePlan(family, "FirstBlockCache", threshold, window, max_consecutive)
    if family == "teaCache":
        threshold = _value(options.teaCacheDistance, "acceleratorOptions.teaCacheDistance")
        return CachePlan(
            family,
            "MagCache",
            threshold,
            window,
            max_consecutive,
            note="remapped: diffusers has no TeaCache; MagCache skips steps by the same rule (accumulated estimated "
            "output change below a threshold) using the magnitude ratios of the official T2I config (also used for "
            "editing, which has none published)",
        )
    if options.dbCacheThreshold is not None:
        raise UnsupportedByEngineError(
            "acceleratorOptions.dbCacheThreshold",
            options.dbCacheThreshold,
            ENGINE,
            "dbCache runs as diffusers' TaylorSeer cache, which refreshes on a fixed interval and has no threshold",
            "dbCacheSkipInterval alone, or fbCache with fbCacheThreshold",
        )
    skip = options.dbCacheSkipInterval or int(spec.LIMITS["acceleratorOptions.dbCacheSkipInterval"].default)
    return CachePlan(
        family,
        "TaylorSeer",
        None,
        window,
        max_consecutive,
        interval=min(skip, max_consecutive) + 1,
        note="TaylorSeer extrapolates block outputs between full computations; the first "
        f"{TAYLORSEER_WARMUP_STEPS} steps are always computed so it has a derivative",
    )


def _value(value: float | None, key: str) -> float:
    return float(value if value is not None else spec.LIMITS[key].default)  # type: ignore[arg-type]


class CacheRun:
    """Apply a :class:`CachePlan` to a pipeline for one call (a context manager).

    It enables the hook, opens a separate cache context for the cond and the uncond pass of every step (the pipeline
    runs them as two sequential transformer calls), forces a full computation outside the cache window and after
    ``max_consecutive`` cached steps, and counts how many transformer calls ran every block (``full_calls``).
    """

    def __init__(self, pipe: Any, plan: CachePlan, steps: int, guidance_scale: float, *, first_step: int = 0) -> None:
        self.pipe = pipe
        self.plan = plan
        # Image to image runs only the steps from ``first_step`` on; the hooks count the steps that run, so the
        # window (given in the request's absolute steps) is shifted to match.
        start, end = plan.window
        self.window = (max(0, start - first_step), max(0, end - first_step))
        self.steps = steps - first_step
        self.passes_per_step = 2 if guidance_scale > 1.0 else 1
        self.calls = 0
        self.full_calls = 0
        self._tail_runs = 0
        self._skipped_in_a_row: dict[str, int] = {}

    # -- enable / disable --------------------------------------------------------------------------------------
    def __enter__(self) -> CacheRun:
        transformer = self.pipe.transformer
        transformer.enable_cache(self._config())
        self._head_hook = _find_hook(transformer, _HEAD_HOOKS.get(self.plan.hook))
        self._base_threshold = self._threshold()
        # The first layer inside the last visual block's feed-forward runs only when a call really computed that
        # block (a skipped block, or a feed-forward that TaylorSeer predicted, never reaches it).
        tail = transformer.visual_transformer_blocks[-1].feed_forward.in_layer
        self._probe = tail.register_forward_hook(self._count_tail)
        self._own_forward = transformer.__dict__.get("forward")  # an instance-level wrapper, if any, to restore
        self._original_forward = transformer.forward
        transformer.forward = self._forward
        return self

    def __exit__(self, *exc: object) -> None:
        transformer = self.pipe.transformer
        if self._own_forward is not None:
            transformer.forward = self._own_forward
        else:
            del transformer.forward  # back to the class's own forward
        self._probe.remove()
        transformer.disable_cache()

    def stats(self) -> dict[str, Any]:
        return {**self.plan.describe(), "transformer_calls": self.calls, "full_calls": self.full_calls}

    # -- the per-call wrapper ----------------------------------------------------------------------------------
    def _forward(self, *args: Any, **kwargs: Any) -> Any:
        step, which = divmod(self.calls, self.passes_per_step)
        name = "cond" if which == 0 else "uncond"
        self.calls += 1
        start, end = self.window
        may_cache = start <= step < end and self._skipped_in_a_row.get(name, 0) < self.plan.max_consecutive
        if self._head_hook is not None:
            self._set_threshold(self._base_threshold if may_cache else -1.0)  # -1: every block must run
        scheduler = self.pipe.scheduler
        sigmas = getattr(scheduler, "sigmas", None)
        timestep = kwargs.get("timestep")
        before = self._tail_runs
        with self.pipe.transformer.cache_context(
            name,
            step_index=step,
            num_inference_steps=self.steps,
            timestep=timestep[0] if timestep is not None else None,
            sigma=float(sigmas[step]) if sigmas is not None and step < len(sigmas) else None,
        ):
            output = self._original_forward(*args, **kwargs)
        computed = self._tail_runs > before
        self.full_calls += computed
        self._skipped_in_a_row[name] = 0 if computed else self._skipped_in_a_row.get(name, 0) + 1
        return output

    def _count_tail(self, *_: Any) -> None:
        self._tail_runs += 1

    def _threshold(self) -> float | None:
        hook = self._head_hook
        if hook is None:
            return None
        return hook.config.threshold if hasattr(hook, "config") else hook.threshold

    def _set_threshold(self, value: float) -> None:
        hook = self._head_hook
        if hasattr(hook, "config"):
            hook.config.threshold = value
        else:
            hook.threshold = value

    # -- the diffusers configs ---------------------------------------------------------------------------------
    def _config(self) -> Any:
        import torch
        from diffusers.hooks import FirstBlockCacheConfig, MagCacheConfig, TaylorSeerCacheConfig

        plan = self.plan
        start, end = self.window
        if plan.hook == "FirstBlockCache":
            _map_kandinsky5_block_argument()
            return FirstBlockCacheConfig(threshold=plan.threshold)
        if plan.hook == "MagCache":
            return MagCacheConfig(
                threshold=plan.threshold,
                max_skip_steps=plan.max_consecutive,
                retention_ratio=start / self.steps,
                num_inference_steps=self.steps,
                mag_ratios=list(OFFICIAL_T2I_MAG_RATIOS[0::2]),  # the cond-pass ratios; one per step
            )
        return TaylorSeerCacheConfig(
            cache_interval=plan.interval,
            disable_cache_before_step=max(start, TAYLORSEER_WARMUP_STEPS),
            disable_cache_after_step=end,
            taylor_factors_dtype=torch.float32,
            cache_identifiers=[TAYLORSEER_MODULES],
        )


_HEAD_HOOKS = {"FirstBlockCache": "fbc_leader_block_hook", "MagCache": "mag_cache_leader_block_hook"}


def _find_hook(module: Any, hook_name: str | None) -> Any:
    if hook_name is None:
        return None
    for submodule in module.modules():
        registry = getattr(submodule, "_diffusers_hook", None)
        hook = registry.get_hook(hook_name) if registry is not None else None
        if hook is not None:
            return hook
    return None


def _map_kandinsky5_block_argument() -> None:
    """First Block Cache asks every block for its ``hidden_states`` argument by that name; the Kandinsky 5 block
    calls it ``visual_embed`` (and says so in diffusers' block registry). Re-register the block with metadata that
    maps the name, once per process."""
    from diffusers.hooks._helpers import TransformerBlockRegistry
    from diffusers.models.transformers.transformer_kandinsky import Kandinsky5TransformerDecoderBlock

    current = TransformerBlockRegistry.get(Kandinsky5TransformerDecoderBlock)
    metadata_class = _kandinsky5_metadata_class()
    if isinstance(current, metadata_class):
        return
    TransformerBlockRegistry.register(
        Kandinsky5TransformerDecoderBlock,
        metadata_class(
            return_hidden_states_index=current.return_hidden_states_index,
            return_encoder_hidden_states_index=current.return_encoder_hidden_states_index,
            hidden_states_argument_name=current.hidden_states_argument_name,
            encoder_hidden_states_argument_name=current.encoder_hidden_states_argument_name,
        ),
    )


@functools.cache
def _kandinsky5_metadata_class() -> type:
    from diffusers.hooks._helpers import TransformerBlockMetadata

    class Kandinsky5BlockMetadata(TransformerBlockMetadata):
        def _get_parameter_from_args_kwargs(self, identifier: str, args: Any = (), kwargs: Any = None) -> Any:
            if identifier == "hidden_states":
                identifier = self.hidden_states_argument_name
            return super()._get_parameter_from_args_kwargs(identifier, args, kwargs)

    return Kandinsky5BlockMetadata
