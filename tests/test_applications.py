"""The paper's downstream uses on the tiny pipeline: variations, style words, composition of two words."""

import numpy as np
import torch
from PIL import Image

from oneword.editing import edit, load_mask
from oneword.evaluation import psnr
from oneword.sampling import variations


def _word(token, dim, seed, n=1, prop="object"):
    from oneword.concept import Concept

    g = torch.Generator().manual_seed(seed)
    return Concept(token, torch.randn(n, dim, generator=g) * 2, {"property": prop})


def test_variations_use_the_papers_templates(tiny_model, monkeypatch):
    import oneword.sampling as gen

    seen = []
    real = gen.generate

    def spy(model, prompt, concepts=(), **kw):
        seen.append(prompt)
        return real(model, prompt, concepts, **kw)

    monkeypatch.setattr(gen, "generate", spy)
    obj = _word("<thing>", tiny_model.hidden_size, 0)
    style = _word("<look>", tiny_model.hidden_size, 1, prop="style")
    images = variations(tiny_model, obj, n=3, steps=2)
    assert len(images) == 3 and len({im.tobytes() for im in images}) == 3
    variations(tiny_model, style, n=1, steps=2)
    assert seen == ["a photo of <thing>", "a painting in the style of <look>"]


def test_two_learned_words_compose_in_one_edit(tiny_model):
    a = _word("<obj-a>", tiny_model.hidden_size, 2, n=2)
    s = _word("<style-s>", tiny_model.hidden_size, 3, prop="style")
    photo = Image.fromarray(np.random.default_rng(0).integers(0, 256, (16, 16, 3), dtype=np.uint8))
    box = (2, 2, 10, 12)
    both = edit(tiny_model, photo, box, "a photo of <obj-a> in the style of <style-s>", [a, s], steps=2)[0]
    one = edit(tiny_model, photo, box, "a photo of <obj-a>", [a, s], steps=2)[0]
    assert not np.array_equal(np.asarray(both), np.asarray(one))
    assert psnr(photo, both, ~load_mask(box, photo.size)) == float("inf")
