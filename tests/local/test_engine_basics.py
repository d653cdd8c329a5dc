"""The local engine on demo weights: what a user relies on for every request (seeds, sizes, formats, results)."""

from __future__ import annotations

import asyncio
import base64
import io

import numpy as np
import pytest
from PIL import Image

from kandinsky_nb import spec
from kandinsky_nb.backends.base import Backend
from kandinsky_nb.types import ImageInferenceRequest

pytestmark = pytest.mark.local

STEPS = spec.LIMITS["steps"].minimum  # the fewest steps the model page allows keeps the suite fast


def request(**fields) -> ImageInferenceRequest:
    fields.setdefault("positivePrompt", "a red fox in snow")
    fields.setdefault("steps", int(STEPS))
    fields.setdefault("outputFormat", "PNG")
    return ImageInferenceRequest(**fields)


def pixels(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"), dtype=np.int16)


def test_demo_backend_is_a_backend_and_says_it_is_demo(demo_backend):
    assert isinstance(demo_backend, Backend)
    assert demo_backend.name == "local"
    assert demo_backend.demo is True
    assert "images are noise" in repr(demo_backend)


def test_generation_fields_and_details(demo_backend):
    req = request(seed=11)
    gen = demo_backend.generate(req)
    assert gen.engine == "local" and gen.demo is True
    assert gen.task_uuid == req.taskUUID
    (image,) = gen.images
    assert image.result.taskUUID == req.taskUUID
    assert image.seed == 11
    assert image.cost is not None and image.cost > 0
    assert image.cost == pytest.approx(gen.details["seconds_per_image"][0] * demo_backend.gpu_hourly_usd / 3600)
    assert image.result.imageURL is None  # no URL exists locally; the bytes are returned instead
    assert image.format == "png"
    details = gen.details
    assert details["demo"] is True and details["device"] == "cpu" and details["dtype"] == "float32"
    assert details["scheduler"]["class"] == "FlowMatchEulerDiscreteScheduler"
    assert details["scale"] == pytest.approx(1 / 8)
    # 1024x1024 at an eighth keeps the aspect ratio exactly
    assert details["pixel_size"] == [128, 128]
    assert image.to_pil().size == (128, 128)


@pytest.mark.parametrize("size", spec.SIZES, ids=str)
def test_every_size_keeps_its_aspect_ratio(demo_backend, size):
    gen = demo_backend.generate(request(seed=1, width=size.width, height=size.height, steps=10))
    width, height = gen.images[0].to_pil().size
    assert (width * 8, height * 8) == (size.width, size.height)


def test_same_seed_same_image_other_seed_other_image(demo_backend):
    a = demo_backend.generate(request(seed=5)).images[0]
    b = demo_backend.generate(request(seed=5)).images[0]
    c = demo_backend.generate(request(seed=6)).images[0]
    assert np.array_equal(pixels(a.data), pixels(b.data))
    assert not np.array_equal(pixels(a.data), pixels(c.data))
    assert a.image_uuid != b.image_uuid


def test_number_results_gives_consecutive_seeds_each_reproducible_alone(demo_backend):
    gen = demo_backend.generate(request(seed=100, numberResults=3))
    assert gen.seeds == [100, 101, 102]
    arrays = [pixels(image.data) for image in gen.images]
    assert not np.array_equal(arrays[0], arrays[1]) and not np.array_equal(arrays[1], arrays[2])
    alone = demo_backend.generate(request(seed=101)).images[0]
    assert np.array_equal(pixels(alone.data), arrays[1])


def test_missing_seed_is_drawn_in_the_unsigned_32_bit_range(demo_backend):
    gen = demo_backend.generate(request(numberResults=2))
    first, second = gen.seeds
    assert 0 <= first <= spec.RANDOM_SEED_MAX and second == first + 1


@pytest.mark.parametrize(("output_format", "pil_format"), [("JPG", "JPEG"), ("PNG", "PNG"), ("WEBP", "WEBP")])
def test_output_formats_decode(demo_backend, output_format, pil_format):
    gen = demo_backend.generate(request(seed=3, outputFormat=output_format, outputQuality=80))
    image = Image.open(io.BytesIO(gen.images[0].data))
    assert image.format == pil_format
    assert image.size == (128, 128)


def test_output_quality_changes_lossy_bytes(demo_backend):
    low = demo_backend.generate(request(seed=3, outputFormat="JPG", outputQuality=20)).images[0].data
    high = demo_backend.generate(request(seed=3, outputFormat="JPG", outputQuality=99)).images[0].data
    assert len(low) < len(high)


def test_output_types_fill_the_right_result_fields(demo_backend):
    b64 = demo_backend.generate(request(seed=4, outputType="base64Data")).images[0]
    assert base64.b64decode(b64.result.imageBase64Data) == b64.data
    assert b64.result.imageDataURI is None
    uri = demo_backend.generate(request(seed=4, outputType="dataURI", outputFormat="WEBP")).images[0]
    head, _, body = uri.result.imageDataURI.partition(",")
    assert head == "data:image/webp;base64" and base64.b64decode(body) == uri.data
    url = demo_backend.generate(request(seed=4, outputType="URL")).images[0]
    assert url.result.imageURL is None and url.result.imageBase64Data is None and url.data


def test_agenerate_matches_generate_and_aresume_has_nothing(demo_backend):
    req = request(seed=9)
    sync = demo_backend.generate(req)
    async_ = asyncio.run(demo_backend.agenerate(req))
    assert np.array_equal(pixels(sync.images[0].data), pixels(async_.images[0].data))
    assert asyncio.run(demo_backend.aresume(req)) is None


def test_image_equals_a_direct_diffusers_call_with_the_claimed_settings(demo_backend, demo_weights):
    """What the backend claims in ``details`` is what it ran: the bare pipeline with those settings gives the same
    pixels."""
    import diffusers
    import torch
    from diffusers import Kandinsky5T2IPipeline

    gen = demo_backend.generate(
        request(seed=21, negativePrompt="blurry, low quality", CFGScale=4.5, scheduler="UniPC", steps=12)
    )
    details = gen.details
    pipe = Kandinsky5T2IPipeline.from_pretrained(details["checkpoint"], local_files_only=True)
    pipe.set_progress_bar_config(disable=True)
    width, height = details["pixel_size"]
    pipe.resolutions = [(width, height)]
    scheduler = details["scheduler"]
    pipe.scheduler = getattr(diffusers, scheduler["class"]).from_config(scheduler["config"])
    (seed,) = details["seeds"]
    assert details["call"]["negative_prompt"] == "blurry, low quality" and details["call"]["guidance_scale"] == 4.5
    torch.manual_seed(seed)
    image = pipe(**details["call"], generator=torch.Generator().manual_seed(seed)).image[0]
    assert np.array_equal(np.asarray(image, dtype=np.int16), pixels(gen.images[0].data))


def test_concurrent_requests_are_serialised_and_match_sequential_runs(demo_backend):
    requests = [request(seed=seed, scheduler="Euler a") for seed in (31, 32, 33)]

    async def together():
        return await asyncio.gather(*(demo_backend.agenerate(req) for req in requests))

    concurrent = asyncio.run(together())
    for req, gen in zip(requests, concurrent, strict=True):
        alone = demo_backend.generate(req)
        assert np.array_equal(pixels(gen.images[0].data), pixels(alone.images[0].data))
