"""Seconds per denoising step at 1024x1024 with a real-size Kandinsky 5 Image Lite transformer (random weights).

    .venv/bin/python benchmarks/bench_gpu_step.py            # on a CUDA machine: real size, bf16
    .venv/bin/python benchmarks/bench_gpu_step.py --tiny     # anywhere: a small transformer, to check the script

Real weights cannot be downloaded here, and the step time of a diffusion transformer does not depend on the values of
its weights, only on its shape. So the pipeline is the real ``Kandinsky5T2IPipeline`` from the offline demo weights,
with its transformer replaced by a randomly initialised one of the real visual size (``Kandinsky5Transformer3DModel``'s
defaults: model_dim 2048, ff_dim 5120, 32 visual blocks, head axes (16, 24, 24)). The text encoders stay tiny (their
cost is paid once per request, not per step), so the transformer's text input sizes follow the demo encoders.

It prints the median seconds per step (CFG on: two transformer passes per step) measured between step callbacks,
against the ideal of a bare transformer forward pass timed in the same run (ratio = pipeline overhead per step).
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import sys
import tempfile
import time


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="a small transformer at 256x256 (runs on a CPU)")
    parser.add_argument("--steps", type=int, default=10)
    args = parser.parse_args()

    import torch

    from kandinsky_nb.backends.local import build_demo_weights, import_local_stack

    _, diffusers = import_local_stack()
    if not args.tiny and not torch.cuda.is_available():
        print("no CUDA device: skipped (run with --tiny to check the script on the CPU)")
        return 0
    device = "cuda" if torch.cuda.is_available() else "cpu"
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    size = 256 if args.tiny else 1024

    folder = build_demo_weights(tempfile.mkdtemp(prefix="k5-bench-"))
    pipe = diffusers.Kandinsky5T2IPipeline.from_pretrained(folder / "t2i", local_files_only=True)
    tiny = pipe.transformer.config
    shape = {"model_dim": 64, "ff_dim": 128, "num_visual_blocks": 2, "axes_dims": (4, 6, 6)} if args.tiny else {}
    with torch.device(device):
        transformer = diffusers.Kandinsky5Transformer3DModel(
            in_visual_dim=tiny.in_visual_dim,
            out_visual_dim=tiny.out_visual_dim,
            in_text_dim=tiny.in_text_dim,
            in_text_dim2=tiny.in_text_dim2,
            patch_size=tuple(tiny.patch_size),
            **shape,
        ).to(dtype)
    pipe.transformer = transformer
    pipe.resolutions = [(size, size)]  # the pipeline snaps other sizes to ~1 MP; --tiny measures a small one
    pipe.set_progress_bar_config(disable=True)
    pipe.to(device)
    for name in ("text_encoder", "text_encoder_2"):  # the VAE is unused: output_type="latent"
        getattr(pipe, name).to(dtype)
    params = sum(p.numel() for p in transformer.parameters())

    stamps: list[float] = []

    def on_step(_pipe, _step, _timestep, kwargs):
        if device == "cuda":
            torch.cuda.synchronize()
        stamps.append(time.perf_counter())
        return kwargs

    call = {"prompt": "a red fox in snow", "negative_prompt": "blurry", "width": size, "height": size}
    pipe(**call, num_inference_steps=2, guidance_scale=5.0, output_type="latent")  # warm-up (kernels, allocator)
    pipe(**call, num_inference_steps=args.steps, guidance_scale=5.0, output_type="latent", callback_on_step_end=on_step)
    # Differences between consecutive step callbacks: the first step (from the call's start) includes prompt encoding.
    per_step = statistics.median(b - a for a, b in itertools.pairwise(stamps))

    # The ideal: two bare transformer passes (cond + uncond) on the same latent shape, no scheduler or pipeline work.
    captured: dict = {}

    def capture(module, args_, kwargs_):
        captured.setdefault("kwargs", kwargs_)
        captured.setdefault("args", args_)

    handle = transformer.register_forward_pre_hook(capture, with_kwargs=True)
    pipe(**call, num_inference_steps=1, guidance_scale=5.0, output_type="latent")
    handle.remove()
    bare: list[float] = []
    with torch.no_grad():
        for _ in range(max(3, args.steps // 2)):
            if device == "cuda":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            transformer(*captured["args"], **captured["kwargs"])
            transformer(*captured["args"], **captured["kwargs"])
            if device == "cuda":
                torch.cuda.synchronize()
            bare.append(time.perf_counter() - t0)
    ideal = statistics.median(bare)

    label = torch.cuda.get_device_name() if device == "cuda" else "CPU"
    print(f"device {label}, {dtype}, transformer {params / 1e6:,.1f} M parameters, {size}x{size}, CFG on")
    print(f"seconds per step (pipeline, median of {len(stamps) - 1}):  {per_step:.4f}")
    print(f"ideal: two bare transformer passes:              {ideal:.4f}")
    print(f"ratio pipeline/ideal:                            {per_step / ideal:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
