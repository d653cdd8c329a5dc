"""Which of the model page's scheduler names the local engine can honour, as a pure table (no torch import).

Kandinsky 5 is a flow-matching model: its transformer predicts the velocity ``eps - x0`` at ``t = sigma * 1000``.
Only flow-matching samplers are correct for it. The diffusers pipeline never checks: a VP/epsilon scheduler (DDIM,
DDPM, PNDM...) runs without an error and produces garbage, and the "Karras"/"Exponential" sigma variants of DPM++
give NaN. Each name below was checked against an analytic flow-velocity oracle (see the project's reference notes,
table A4), so every choice here is either the right flow scheduler or a refusal that says why and what to use.

Panels read :data:`LOCAL_SCHEDULERS` to show which names work locally; the engine builds the scheduler from it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ... import spec
from ...errors import UnsupportedByEngineError
from .stack import ENGINE

__all__ = [
    "LOCAL_SCHEDULERS",
    "SchedulerChoice",
    "local_scheduler",
    "supported_local_schedulers",
]


# Keyword arguments that turn a multistep solver into its flow-matching form; ``flow_shift`` is added at build time
# from the checkpoint's own scheduler config so a checkpoint with another shift keeps it.
_FLOW_SIGMAS: dict[str, Any] = {"use_flow_sigmas": True, "prediction_type": "flow_prediction"}


@dataclass(frozen=True)
class SchedulerChoice:
    """What the local engine does with one scheduler name.

    ``scheduler_class`` is the diffusers class (None when refused); ``config`` the keyword arguments given on top of
    the checkpoint's flow-matching config; ``remapped`` is True when the name's own variant would be wrong for this
    model and a close flow-matching variant runs instead (``note`` says which); ``stochastic`` samplers draw fresh
    noise every step (the engine seeds them so the same seed still gives the same image).
    """

    name: str
    scheduler_class: str | None
    config: dict[str, Any] = field(default_factory=dict)
    remapped: bool = False
    stochastic: bool = False
    note: str = ""
    instead: str = ""
    # Whether the sampler can start part-way through its schedule (image to image from a seedImage). The single-step
    # Euler samplers can; the multistep solvers size their orders from the length of the whole schedule.
    partial_schedule: bool = False

    @property
    def supported(self) -> bool:
        return self.scheduler_class is not None


_USE_INSTEAD = "'Euler' (the model's own sampler), 'UniPC' or 'DPM++ 2M Karras' (runs as flow DPM++ 2M)"

LOCAL_SCHEDULERS: dict[str, SchedulerChoice] = {
    "Euler": SchedulerChoice(
        "Euler",
        "FlowMatchEulerDiscreteScheduler",
        note="the model's own sampler: flow-matching Euler with the checkpoint's shift",
        partial_schedule=True,
    ),
    "Euler Trailing": SchedulerChoice(
        "Euler Trailing",
        "FlowMatchEulerDiscreteScheduler",
        note="same as Euler: flow-matching sigmas already start at sigma=1, so trailing spacing is what Euler does",
        partial_schedule=True,
    ),
    "Euler a": SchedulerChoice(
        "Euler a",
        "LTXEulerAncestralRFScheduler",
        stochastic=True,
        note="rectified-flow Euler ancestral (eta=1), the flow form of 'Euler a'",
        partial_schedule=True,
    ),
    "UniPC": SchedulerChoice(
        "UniPC",
        "UniPCMultistepScheduler",
        config=dict(_FLOW_SIGMAS),
        note="UniPC with flow-matching sigmas",
    ),
    "DPM++ 2M Karras": SchedulerChoice(
        "DPM++ 2M Karras",
        "DPMSolverMultistepScheduler",
        config={**_FLOW_SIGMAS, "algorithm_type": "dpmsolver++", "solver_order": 2},
        remapped=True,
        note="runs as flow DPM++ 2M: Karras sigmas are VP sigmas and give NaN on a flow-matching model",
    ),
    "DPM++ 2M SDE Karras": SchedulerChoice(
        "DPM++ 2M SDE Karras",
        "DPMSolverMultistepScheduler",
        config={**_FLOW_SIGMAS, "algorithm_type": "sde-dpmsolver++", "solver_order": 2},
        remapped=True,
        stochastic=True,
        note="runs as flow DPM++ 2M SDE: Karras sigmas are VP sigmas and give NaN on a flow-matching model",
    ),
    "DPM++ 2M SDE Exponential": SchedulerChoice(
        "DPM++ 2M SDE Exponential",
        "DPMSolverMultistepScheduler",
        config={**_FLOW_SIGMAS, "algorithm_type": "sde-dpmsolver++", "solver_order": 2},
        remapped=True,
        stochastic=True,
        note="runs as flow DPM++ 2M SDE: exponential sigmas give NaN on a flow-matching model",
    ),
    "DPM++ SDE Karras": SchedulerChoice(
        "DPM++ SDE Karras",
        None,
        note="diffusers' DPMSolverSDEScheduler is VP-only (no flow-matching form) and needs torchsde",
        instead="'DPM++ 2M SDE Karras' (runs as flow DPM++ 2M SDE) or 'Euler a' for a stochastic sampler",
    ),
    "LCM": SchedulerChoice(
        "LCM",
        None,
        note="LCM sampling is only correct for consistency-distilled checkpoints and Kandinsky 5 Image Lite has none",
        instead=_USE_INSTEAD,
    ),
    "DDIM": SchedulerChoice(
        "DDIM",
        None,
        note="DDIM is a VP/epsilon sampler and produces garbage on a flow-matching model; its flow analogue is Euler",
        instead="'Euler' (the deterministic flow analogue of DDIM)",
    ),
    "DDPM": SchedulerChoice(
        "DDPM",
        None,
        note="DDPM is a VP/epsilon sampler and produces garbage on a flow-matching model",
        instead="'Euler a' (a stochastic flow sampler) or 'Euler'",
    ),
    "PNDM": SchedulerChoice(
        "PNDM",
        None,
        note="PNDM is a VP/epsilon sampler and produces garbage on a flow-matching model",
        instead=_USE_INSTEAD,
    ),
}

assert set(LOCAL_SCHEDULERS) == set(spec.SCHEDULERS), "every scheduler name of the model page needs a local decision"


def supported_local_schedulers() -> tuple[str, ...]:
    """The scheduler names the local engine runs, in the model page's order."""
    return tuple(name for name in spec.SCHEDULERS if LOCAL_SCHEDULERS[name].supported)


def local_scheduler(name: str | None) -> SchedulerChoice:
    """The local engine's choice for a scheduler name (None = the model default), or UnsupportedByEngineError."""
    choice = LOCAL_SCHEDULERS[name or spec.MODEL_DEFAULT_SCHEDULER]
    if not choice.supported:
        raise UnsupportedByEngineError("scheduler", choice.name, ENGINE, choice.note, choice.instead)
    return choice
