"""kandinsky_nb: a Jupyter toolkit for Kandinsky 5.0 Image Lite (``runware:kandinsky-5.0-image-lite@1``).

Build validated requests, run them on the Runware cloud or a local engine, log every run, sweep parameters, and
analyse cost. The public surface is what this module exports; everything else is private.
"""

from . import spec
from ._version import __version__
from .errors import (
    APIConnectionError,
    APIError,
    APIStatusError,
    APITimeoutError,
    AuthenticationError,
    BackendError,
    BudgetExceededError,
    ConfigurationError,
    InsufficientCreditsError,
    KandinskyNBError,
    MissingDependencyError,
    PermissionDeniedError,
    PollTimeoutError,
    RateLimitError,
    RequestValidationError,
    ResponseValidationError,
    RunLogError,
    ServerError,
    SweepBusyError,
    SweepError,
    TaskError,
    UnreadableImage,
    UnsupportedByEngineError,
    UnusableCostError,
)
from .types import (
    AcceleratorOptions,
    GeneratedImage,
    Generation,
    ImageInferenceRequest,
    ImageInferenceResult,
    ImageRef,
    Lora,
    Safety,
    WireError,
)

# The engine, run log, analysis and panels load on first use, so `import kandinsky_nb` stays fast and light
# (no pandas, matplotlib, ipywidgets or httpx clients until they are needed; torch only with the local engine).
_LAZY = {
    "Session": "kandinsky_nb.session",
    "SweepPlan": "kandinsky_nb.session",
    "RunLog": "kandinsky_nb.runlog",
    "contact_sheet": "kandinsky_nb.analysis",
    "score_sweep": "kandinsky_nb.analysis",
    "RunwareBackend": "kandinsky_nb.backends.runware",
    "LocalBackend": "kandinsky_nb.backends.local",
    "GeneratePanel": "kandinsky_nb.ui",
    "Gallery": "kandinsky_nb.ui",
    "SweepPanel": "kandinsky_nb.ui",
    "CostPanel": "kandinsky_nb.ui",
    "RunViewer": "kandinsky_nb.ui",
    "compare_runs": "kandinsky_nb.ui",
    "show_generation": "kandinsky_nb.ui",
}


def __getattr__(name: str) -> object:
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'kandinsky_nb' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


__all__ = [
    "APIConnectionError",
    "APIError",
    "APIStatusError",
    "APITimeoutError",
    "AcceleratorOptions",
    "AuthenticationError",
    "BackendError",
    "BudgetExceededError",
    "ConfigurationError",
    "CostPanel",
    "Gallery",
    "GeneratePanel",
    "GeneratedImage",
    "Generation",
    "ImageInferenceRequest",
    "ImageInferenceResult",
    "ImageRef",
    "InsufficientCreditsError",
    "KandinskyNBError",
    "LocalBackend",
    "Lora",
    "MissingDependencyError",
    "PermissionDeniedError",
    "PollTimeoutError",
    "RateLimitError",
    "RequestValidationError",
    "ResponseValidationError",
    "RunLog",
    "RunLogError",
    "RunViewer",
    "RunwareBackend",
    "Safety",
    "ServerError",
    "Session",
    "SweepBusyError",
    "SweepError",
    "SweepPanel",
    "SweepPlan",
    "TaskError",
    "UnreadableImage",
    "UnsupportedByEngineError",
    "UnusableCostError",
    "WireError",
    "__version__",
    "compare_runs",
    "contact_sheet",
    "score_sweep",
    "show_generation",
    "spec",
]


# -- Jupyter hooks: each imports kandinsky_nb.jupyter only when Jupyter or IPython calls it -----------------------
def _jupyter_server_extension_points() -> list[dict[str, object]]:
    """Found by jupyter_server (enabled by the config file the wheel installs): the read-only run-log API."""
    from .jupyter import server_extension_points

    return server_extension_points()


def _jupyter_labextension_paths() -> list[dict[str, str]]:
    """Found by JupyterLab for a development install; a wheel installs the same files under share/jupyter."""
    from .jupyter import labextension_paths

    return labextension_paths()


def load_ipython_extension(ipython: object) -> None:
    """``%load_ext kandinsky_nb``: the ``%knb`` and ``%%knb`` magics."""
    from .jupyter import load_ipython_extension as load

    load(ipython)
