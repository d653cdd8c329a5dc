"""CLIP score and the aesthetic predictor on tiny RANDOM CLIP models built here (their scores are noise: these tests
check the plumbing and the arithmetic, not what the scores mean)."""

from __future__ import annotations

import itertools
import re

import numpy as np
import pytest
from quality_testkit import PROJECTION, scene

pytest.importorskip("transformers", reason="needs the 'local' extra")
torch = pytest.importorskip("torch", reason="needs the 'local' extra")

from kandinsky_nb.errors import ConfigurationError  # noqa: E402
from kandinsky_nb.quality import AESTHETIC_HEAD_URL, AestheticScore, CLIPScore  # noqa: E402


def _forward(folder, images, prompts):
    """CLIP's own forward pass (a different path from the scorers): normalised image and text embeddings."""
    from transformers import AutoTokenizer, CLIPImageProcessorPil, CLIPModel

    model = CLIPModel.from_pretrained(folder).eval()
    tokens = AutoTokenizer.from_pretrained(folder)(prompts, padding=True, return_tensors="pt")
    pixels = CLIPImageProcessorPil.from_pretrained(folder)(images=images, return_tensors="pt")["pixel_values"]
    with torch.inference_mode():
        output = model(input_ids=tokens["input_ids"], attention_mask=tokens["attention_mask"], pixel_values=pixels)
    return output.image_embeds.numpy(), output.text_embeds.numpy()


def test_clip_score_is_100_times_the_clipped_cosine(tiny_clip):
    images = [scene(seed) for seed in (1, 2, 3)]
    prompts = ["a red fox in snow", "a bowl of ramen", "a lighthouse at dusk"]
    scorer = CLIPScore(tiny_clip, device="cpu", batch_size=2)
    scores = scorer.score_many(images, prompts=prompts)
    image_embeds, text_embeds = _forward(tiny_clip, images, prompts)
    cosines = (image_embeds * text_embeds).sum(axis=1)
    assert scores == pytest.approx([100 * max(float(c), 0.0) for c in cosines], abs=1e-3)
    assert scorer.score(images[1], prompt=prompts[1]) == pytest.approx(scores[1], abs=1e-4)  # batches do not matter
    assert all(0 <= s <= 100 for s in scores)


def test_random_weights_say_so(tiny_clip):
    scorer = CLIPScore(tiny_clip)
    assert scorer.random_weights is True
    assert scorer.version.startswith("1+random-weights:") and str(tiny_clip.name) in scorer.version
    assert "random weights: scores are noise" in repr(scorer)
    assert scorer.against == "prompt" and scorer.metric == "clip_score"


def test_clip_score_needs_prompts_and_loadable_weights(tiny_clip, tmp_path):
    with pytest.raises(ConfigurationError, match=r"prompt=None: CLIP score measures how well an image matches"):
        CLIPScore(tiny_clip).score(scene(1))
    with pytest.raises(ConfigurationError, match=r"batch_size=0: must be at least 1"):
        CLIPScore(tiny_clip, batch_size=0)
    empty = tmp_path / "not-a-model"
    empty.mkdir()
    with pytest.raises(ConfigurationError, match=r"cannot load a CLIP model for CLIP scoring .* Give a folder saved"):
        CLIPScore(empty).score(scene(1), prompt="a fox")


def _head(path, widths, seed=0):
    """A LAION-layout head: Linear layers at layers.0, .2, .4 (dropout between), saved as a state dict."""
    generator = torch.Generator().manual_seed(seed)
    state = {}
    for index, (width_in, width_out) in enumerate(itertools.pairwise(widths)):
        state[f"layers.{2 * index}.weight"] = torch.randn(width_out, width_in, generator=generator)
        state[f"layers.{2 * index}.bias"] = torch.randn(width_out, generator=generator)
    if path.suffix == ".safetensors":
        from safetensors.torch import save_file

        save_file(state, path)
    else:
        torch.save(state, path)
    return state


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_aesthetic_score_is_the_head_over_normalised_image_embeddings(tiny_clip, tmp_path, suffix):
    head = tmp_path / f"head{suffix}"
    state = _head(head, [PROJECTION, 16, 4, 1])
    images = [scene(seed) for seed in (1, 2)]
    scorer = AestheticScore(head, clip=tiny_clip, device="cpu")
    image_embeds, _ = _forward(tiny_clip, images, ["x", "x"])
    values = image_embeds
    for index in (0, 2, 4):
        values = values @ state[f"layers.{index}.weight"].numpy().T + state[f"layers.{index}.bias"].numpy()
    assert scorer.score_many(images) == pytest.approx(values.reshape(-1).tolist(), rel=1e-4, abs=1e-4)
    assert scorer.random_weights is True and "random-weights" in scorer.version and head.name in scorer.version
    # A folder with one head file in it works too.
    assert AestheticScore(tmp_path, clip=tiny_clip).score(images[0]) == pytest.approx(float(values[0, 0]), abs=1e-4)


def test_aesthetic_head_errors_name_the_fix(tiny_clip, tmp_path):
    with pytest.raises(
        ConfigurationError, match=rf"no such file or folder; download LAION's head from {re.escape(AESTHETIC_HEAD_URL)}"
    ):
        AestheticScore(tmp_path / "missing.pth", clip=tiny_clip)
    (tmp_path / "head.txt").write_text("not weights")
    with pytest.raises(ConfigurationError, match=r"head.txt': not a .pth, .pt, .safetensors file"):
        AestheticScore(tmp_path / "head.txt", clip=tiny_clip)
    wide = tmp_path / "wide"
    wide.mkdir()
    _head(wide / "head.pth", [768, 4, 1])
    with pytest.raises(ConfigurationError, match=r"takes 768-wide embeddings but the CLIP gives 8; pass clip="):
        AestheticScore(wide / "head.pth", clip=tiny_clip).score(scene(1))
    _head(wide / "other.safetensors", [8, 1])
    with pytest.raises(ConfigurationError, match=r"a folder needs exactly one .pth, .pt, .safetensors file, found 2"):
        AestheticScore(wide, clip=tiny_clip)
    odd = tmp_path / "odd.pth"
    torch.save({"weight": torch.zeros(1, 8)}, odd)
    with pytest.raises(ConfigurationError, match=r"no 'layers.<i>.weight' keys"):
        AestheticScore(odd, clip=tiny_clip).score(scene(1))
    assert np.isfinite(AestheticScore(wide / "other.safetensors", clip=tiny_clip).score(scene(1)))
