"""Per-step progress and latent previews from the local engine on the real demo pipeline: every denoising step of
every image is reported in order, previews come every few steps as small RGB images of the latent's shape, the
engine's other backends ignore on_step, and the projection itself is the fixed linear map it claims to be."""

from __future__ import annotations

import asyncio

import pytest

from kandinsky_nb.backends.base import Backend
from kandinsky_nb.backends.local.plan import scaled_size
from kandinsky_nb.backends.local.progress import LATENT_RGB_BIAS, LATENT_RGB_FACTORS, latent_preview
from kandinsky_nb.errors import BackendError
from kandinsky_nb.types import ImageInferenceRequest

pytestmark = pytest.mark.local


def request(**fields):
    base = {"positivePrompt": "a red fox in snow", "width": 1280, "height": 768, "steps": 10, "seed": 7}
    return ImageInferenceRequest.model_validate(base | fields)


def test_every_step_of_every_image_is_reported_with_previews(demo_backend):
    calls = []
    generation = demo_backend.generate_with_progress(
        request(numberResults=2), lambda step, total, preview: calls.append((step, total, preview))
    )
    assert len(generation.images) == 2
    assert [step for step, _, _ in calls] == list(range(1, 21))
    assert {total for _, total, _ in calls} == {20}
    previews = [(step, preview) for step, _, preview in calls if preview is not None]
    # 10 steps per image: a preview after every step but an image's last (its image comes next).
    assert [step for step, _ in previews] == [*range(1, 10), *range(11, 20)]
    width, height = scaled_size(1280, 768, demo_backend.scale)
    for _, preview in previews:
        assert preview.mode == "RGB" and preview.size == (width // 8, height // 8)
    # Previews change as the latents are denoised (they are not one image repeated).
    assert previews[0][1].tobytes() != previews[8][1].tobytes()


def test_progress_does_not_change_the_image(demo_backend):
    plain = demo_backend.generate(request())
    watched = demo_backend.generate_with_progress(request(), lambda *_: None)
    assert plain.images[0].data == watched.images[0].data


def test_image_to_image_counts_only_the_steps_that_run(demo_backend):
    from PIL import Image

    source = Image.new("RGB", (160, 96), (200, 40, 40))
    totals = set()
    demo_backend.generate_with_progress(
        request(seedImage=source, strength=0.5), lambda step, total, preview: totals.add(total)
    )
    assert totals == {5}


async def test_the_async_twin_reports_steps_from_its_worker_thread(demo_backend):
    import threading

    threads = set()
    steps = []

    def on_step(step, total, preview):
        threads.add(threading.get_ident())
        steps.append(step)

    generation = await demo_backend.agenerate_with_progress(request(), on_step)
    assert generation.images and steps == list(range(1, 11))
    assert threading.get_ident() not in threads  # the event loop was never blocked by the pipeline


def test_an_error_in_on_step_stops_the_run(demo_backend):
    def broken(step, total, preview):
        if step == 3:
            raise RuntimeError("display went away")

    with pytest.raises(BackendError, match="display went away"):
        demo_backend.generate_with_progress(request(), broken)


def test_engines_that_cannot_report_steps_ignore_on_step():
    class OneAnswer(Backend):
        def generate(self, request):
            return "answer"

    calls = []
    engine = OneAnswer()
    assert engine.generate_with_progress(request(), lambda *a: calls.append(a)) == "answer"
    assert asyncio.run(engine.agenerate_with_progress(request(), lambda *a: calls.append(a))) == "answer"
    assert calls == []


def test_the_preview_is_the_fixed_linear_map_of_the_latent_channels():
    torch = pytest.importorskip("torch")
    # One pixel per latent channel set to 1 (the rest 0), in the pipeline's [batch, frames, h, w, channels] layout,
    # plus conditioning channels (editing) that the preview must leave out.
    latents = torch.zeros(1, 1, 1, 16, 33)
    for channel in range(16):
        latents[0, 0, 0, channel, channel] = 1.0
    latents[..., 16:] = 50.0
    preview = latent_preview(latents)
    pixels = [preview.getpixel((x, 0)) for x in range(16)]
    for channel, pixel in enumerate(pixels):
        expected = [
            min(255, max(0, int((LATENT_RGB_FACTORS[channel][i] + LATENT_RGB_BIAS[i] + 1) * 127.5))) for i in range(3)
        ]
        assert all(abs(a - b) <= 1 for a, b in zip(pixel, expected, strict=True)), (channel, pixel, expected)


def test_the_vae_shift_is_taken_off_before_projecting():
    torch = pytest.importorskip("torch")

    class VaeConfig:
        shift_factor, scaling_factor = 0.5, 2.0

    # z * scale with z = shift: exactly the Flux latent format's zero, so the picture is the bias alone.
    latents = torch.full((1, 1, 2, 2, 16), 0.5 * 2.0)
    pixel = latent_preview(latents, VaeConfig()).getpixel((0, 0))
    expected = tuple(int((bias + 1) * 127.5) for bias in LATENT_RGB_BIAS)
    assert all(abs(a - b) <= 1 for a, b in zip(pixel, expected, strict=True)), (pixel, expected)
