"""Where one SD1.5 learning step's FLOPs are (torch.utils.flop_counter on the meta device: no weights, no compute,
seconds on any machine): the UNet's forward and its backward to the conditioning, against the text encoder's
forward and backward; and the share of text-encoder positions before the placeholder, the only work that does
not depend on the new vector (CLIP's text attention is causal). It answers whether caching that work pays.

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/flops.py
"""
import sys
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.sd15 import build_modules, clip_tokenizer  # noqa: E402
from oneword.templates import OBJECT_TEMPLATES, STYLE_TEMPLATES  # noqa: E402


def image_step_gflop(latent: int = 64) -> tuple[float, float, float]:
    """(text encoder forward, text encoder backward, UNet forward + backward to the conditioning) GFLOP of one
    SD1.5 image-step with latents latent x latent (64: 512 px)."""
    unet, _, text, tokenizer, _ = build_modules("meta")
    for m in (unet, text):
        m.requires_grad_(False)  # frozen, as in learning: the backward computes input gradients only
    ids = tokenizer(["a photo of a dog"], padding="max_length", max_length=77, return_tensors="pt").input_ids
    v = torch.zeros(1, text.config.hidden_size, device="meta", requires_grad=True)
    table = text.get_input_embeddings()

    class WithVector(torch.nn.Module):  # the new vector enters the text encoder (so its backward is counted)
        def forward(self, i):
            return table(i) + v

    text.set_input_embeddings(WithVector())
    with FlopCounterMode(display=False) as text_fwd:
        hidden = text(ids.to("meta"))[0]
    with FlopCounterMode(display=False) as text_bwd:
        hidden.float().sum().backward()
    cond = torch.zeros(1, 77, text.config.hidden_size, device="meta", requires_grad=True)
    x = torch.zeros(1, 4, latent, latent, device="meta")
    with FlopCounterMode(display=False) as unet_both:
        unet(x, torch.tensor([500], device="meta"), cond).sample.float().mean().backward()
    return tuple(m.get_total_flops() / 1e9 for m in (text_fwd, text_bwd, unet_both))


def main() -> int:
    t_f, t_b, u = image_step_gflop()
    tokenizer = clip_tokenizer()
    total = t_f + t_b + u
    print(f"one image-step at 512 px: {total:,.0f} GFLOP = UNet forward + backward to the conditioning {u:,.0f} "
          f"({u / total:.1%}) + text encoder forward {t_f:.1f} and backward {t_b:.1f} ({(t_f + t_b) / total:.1%})")
    for name, templates in (("object", OBJECT_TEMPLATES), ("style", STYLE_TEMPLATES)):
        before = [tokenizer(t.split("{}")[0].strip()).input_ids[:-1] for t in templates]  # BOS + words, no EOS
        share = sum(len(b) for b in before) / len(before) / 77
        print(f"{name} templates: {share:.1%} of the 77 text positions precede the placeholder; caching them "
              f"would save {share * (t_f + t_b) / total:.2%} of a step's FLOPs")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
