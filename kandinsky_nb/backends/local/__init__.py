"""The local engine: Kandinsky 5.0 Image Lite through diffusers (real checkpoints or offline demo weights).

Importing this package is cheap; torch and diffusers load when a pipeline is first built or loaded. The scheduler
table (:data:`LOCAL_SCHEDULERS`) needs neither.

Modules, bottom to top (each imports only those before it):

* ``stack``: the engine's name; importing torch + diffusers with a clear error; quiet progress bars
* ``schedulers``, ``lora``, ``caches``: one request knob each (a pure plan, plus what applies it to a pipeline)
* ``demo_weights``: builds the tiny random pipelines offline; ``weights``: where the pipelines come from
* ``plan``: pure decisions (request -> :class:`RunPlan`, sizes, seeds, result fields)
* ``progress``: per-step reports and latent previews (diffusers' ``callback_on_step_end``, a fixed latent -> RGB map)
* ``pipelines``: the diffusers glue (load, schedulers, one seeded call, images in and out)
* ``engine``: :class:`LocalBackend`, the stateful shell
"""

from .demo_weights import build_demo_weights, demo_weights_ready, is_demo_weights
from .engine import DEFAULT_GPU_HOURLY_USD, LocalBackend
from .pipelines import encode_image
from .plan import DEMO_SCALE, image_seeds, scaled_size
from .schedulers import LOCAL_SCHEDULERS, SchedulerChoice, local_scheduler, supported_local_schedulers
from .stack import import_local_stack
from .weights import WeightsLocation, resolve_weights

__all__ = [
    "DEFAULT_GPU_HOURLY_USD",
    "DEMO_SCALE",
    "LOCAL_SCHEDULERS",
    "LocalBackend",
    "SchedulerChoice",
    "WeightsLocation",
    "build_demo_weights",
    "demo_weights_ready",
    "encode_image",
    "image_seeds",
    "import_local_stack",
    "is_demo_weights",
    "local_scheduler",
    "resolve_weights",
    "scaled_size",
    "supported_local_schedulers",
]
