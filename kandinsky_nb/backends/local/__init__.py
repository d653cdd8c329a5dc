"""The local engine: Kandinsky 5.0 Image Lite through diffusers (real checkpoints or offline demo weights).

Importing this package is cheap; torch and diffusers load when a pipeline is first built or loaded. The scheduler
table (:data:`LOCAL_SCHEDULERS`) needs neither.
"""

from .demo_weights import build_demo_weights, demo_weights_ready, is_demo_weights
from .engine import DEFAULT_GPU_HOURLY_USD, DEMO_SCALE, LocalBackend
from .schedulers import LOCAL_SCHEDULERS, SchedulerChoice, local_scheduler, supported_local_schedulers

__all__ = [
    "DEFAULT_GPU_HOURLY_USD",
    "DEMO_SCALE",
    "LOCAL_SCHEDULERS",
    "LocalBackend",
    "SchedulerChoice",
    "build_demo_weights",
    "demo_weights_ready",
    "is_demo_weights",
    "local_scheduler",
    "supported_local_schedulers",
]
