"""kandinsky_nb: a Jupyter toolkit for Kandinsky 5.0 Image Lite (``runware:kandinsky-5.0-image-lite@1``).

Build validated requests, run them on the Runware cloud or a local engine, log every run, sweep parameters, and
analyse cost. The public surface is what this module exports; everything else is private.
"""

from . import spec
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
    SweepError,
    TaskError,
    UnsupportedByEngineError,
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

__version__ = "0.1.0"

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
    "GeneratedImage",
    "Generation",
    "ImageInferenceRequest",
    "ImageInferenceResult",
    "ImageRef",
    "InsufficientCreditsError",
    "KandinskyNBError",
    "Lora",
    "MissingDependencyError",
    "PermissionDeniedError",
    "PollTimeoutError",
    "RateLimitError",
    "RequestValidationError",
    "ResponseValidationError",
    "RunLogError",
    "Safety",
    "ServerError",
    "SweepError",
    "TaskError",
    "UnsupportedByEngineError",
    "WireError",
    "__version__",
    "spec",
]
