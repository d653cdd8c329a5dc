"""Per-step progress and live previews for the local engine, through diffusers' ``callback_on_step_end``.

:class:`StepReporter` is the callback one request's pipeline calls get: it counts the denoising steps of every image of
the request and hands ``on_step(step, total, preview)`` to the caller, with a preview every few steps.

A preview is a fixed linear map of the 16 latent channels to RGB (ComfyUI's factors for the Flux VAE, whose latent
space Kandinsky 5 uses), at latent resolution (an eighth of the image a side): no VAE decode per step, so a preview
costs well under a millisecond. It shows the current noisy latents, so early previews are mostly noise and the image
forms as the steps go. On demo weights every preview is noise, as their images are.

torch and PIL are imported inside the functions, so importing this module stays cheap.
"""

from __future__ import annotations

import math
from typing import Any

from ..base import StepCallback

__all__ = ["LATENT_RGB_BIAS", "LATENT_RGB_FACTORS", "PREVIEWS_PER_IMAGE", "StepReporter", "latent_preview"]

# ComfyUI's latent -> RGB projection of the Flux VAE's 16 channels (comfy/latent_formats.py, class Flux), the
# community-standard table other previewers reuse. One row per latent channel: its (R, G, B) weights; the result is in
# about [-1, 1].
LATENT_RGB_FACTORS: tuple[tuple[float, float, float], ...] = (
    (-0.0346, 0.0244, 0.0681),
    (0.0034, 0.0210, 0.0687),
    (0.0275, -0.0668, -0.0433),
    (-0.0174, 0.0160, 0.0617),
    (0.0859, 0.0721, 0.0329),
    (0.0004, 0.0383, 0.0115),
    (0.0405, 0.0861, 0.0915),
    (-0.0236, -0.0185, -0.0259),
    (-0.0245, 0.0250, 0.1180),
    (0.1008, 0.0755, -0.0421),
    (-0.0515, 0.0201, 0.0011),
    (0.0428, -0.0012, -0.0036),
    (0.0817, 0.0765, 0.0749),
    (-0.1264, -0.0522, -0.1103),
    (-0.0280, -0.0881, -0.0499),
    (-0.1262, -0.0982, -0.0778),
)
LATENT_RGB_BIAS: tuple[float, float, float] = (-0.0329, -0.0718, -0.0851)

# About this many previews per image: enough to watch the image form, few enough that drawing them costs nothing.
PREVIEWS_PER_IMAGE = 10


def latent_preview(latents: Any, vae_config: Any = None) -> Any:
    """A PIL RGB image of the first latent in ``latents`` (the pipeline's ``[batch, frames, height, width, channels]``
    layout, channels last; editing adds conditioning channels after the first 16, which are left out).

    ComfyUI's factors expect ``(z - shift) * scale``; the Kandinsky 5 pipelines keep ``z * scale`` (they divide by the
    scaling factor alone before decoding), so the VAE's shift is taken off first when ``vae_config`` names one."""
    import torch
    from PIL import Image

    factors = torch.tensor(LATENT_RGB_FACTORS, dtype=torch.float32)
    bias = torch.tensor(LATENT_RGB_BIAS, dtype=torch.float32)
    with torch.no_grad():
        latent = latents[0, 0, :, :, : len(LATENT_RGB_FACTORS)].detach().to("cpu", torch.float32)
        shift = getattr(vae_config, "shift_factor", None) or 0.0
        scale = getattr(vae_config, "scaling_factor", None) or 1.0
        rgb = (latent - shift * scale) @ factors + bias
        pixels = ((rgb + 1.0) * 127.5).clamp(0, 255).to(torch.uint8).numpy()
    return Image.fromarray(pixels, "RGB")


class StepReporter:
    """diffusers' ``callback_on_step_end`` for the pipeline calls of one request (one call per image).

    ``images``: how many pipeline calls the request makes; every call runs the same number of steps, read from the
    pipeline itself (image to image runs only the tail of its schedule). ``every``: a preview each this many steps
    (default: about :data:`PREVIEWS_PER_IMAGE` per image; none on an image's last step, whose image comes next).
    """

    def __init__(self, on_step: StepCallback, images: int, every: int | None = None) -> None:
        self.on_step = on_step
        self.images = images
        self.every = every
        self.done = 0  # steps finished, over every image of the request

    def preview_every(self, steps_per_image: int) -> int:
        return self.every or max(1, math.ceil(steps_per_image / PREVIEWS_PER_IMAGE))

    def __call__(self, pipe: Any, index: int, timestep: Any, tensors: dict[str, Any]) -> dict[str, Any]:
        steps_per_image = int(pipe.num_timesteps)
        self.done += 1
        step_in_image = index + 1
        preview = None
        if step_in_image < steps_per_image and step_in_image % self.preview_every(steps_per_image) == 0:
            preview = latent_preview(tensors["latents"], getattr(getattr(pipe, "vae", None), "config", None))
        self.on_step(self.done, steps_per_image * self.images, preview)
        return {}  # nothing replaced: the pipeline keeps its own tensors
