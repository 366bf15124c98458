"""Stable Diffusion XL: two text encoders, CLIP ViT-L (clip_l, 768 wide) and OpenCLIP ViT-bigG (clip_g, 1280),
and a UNet conditioned as SDXL was trained:

* the penultimate hidden states of both encoders, side by side ([batch, 77, 2048]);
* the pooled, projected output of the second encoder at the end token (``text_embeds``): it sees the new word,
  so the word's gradient flows through it too;
* ``time_ids``: each photo's original size, crop offset and target size (SDXL's micro-conditioning).

The word is learned in both encoders at once: ``[n, 768 + 1280]``, each part started from the init word in its
own encoder, written as one file with ``clip_l`` and ``clip_g`` (what kohya, OneTrainer, invoke-training,
AUTOMATIC1111 and ComfyUI read). Photos are encoded by the VAE in float32 when the model runs in float16:
SDXL's VAE overflows there (NaN latents, black images).
"""

from __future__ import annotations

import torch

from ..concept import Concept, check_sdxl_parts
from ..errors import OnewordError
from .base import Encoder, Family, ids_of

END_OF_TEXT = 49407  # CLIP's end token: where the pooled output is read


class SDXL(Family):
    name = "sdxl"
    label = "SDXL"

    def encoders(self, pipe) -> list[Encoder]:
        w = int(pipe.text_encoder.config.hidden_size)
        return [
            Encoder("clip_l", pipe.tokenizer, pipe.text_encoder, slice(0, w)),
            Encoder("clip_g", pipe.tokenizer_2, pipe.text_encoder_2, slice(w, None)),
        ]

    def prepare(self, pipe) -> None:
        """The pooled output must be read at the end token. Hub SDXL's text_encoder_2/config.json says
        eos_token_id 2, which makes transformers read it at the highest token id instead: the new word, once
        added. Both encoders read it at the end token of their tokenizer."""
        for tok, te in ((pipe.tokenizer, pipe.text_encoder), (pipe.tokenizer_2, pipe.text_encoder_2)):
            eos = tok.eos_token_id if tok.eos_token_id is not None else END_OF_TEXT
            te.config.eos_token_id = eos
            for m in te.modules():  # the text model keeps its own copy (transformers 4: te.text_model, 5: te)
                if "eos_token_id" in vars(m):
                    m.eos_token_id = eos

    # ------------------------------------------------------------------------------------ the word
    def word_vectors(self, pipe, concept: Concept) -> torch.Tensor:
        widths = [e.width for e in self.encoders(pipe)]
        if concept.parts is None:
            raise OnewordError(
                f"embedding {concept.token!r} is a single-encoder (SD1.x/2.x) embedding of width "
                f"{concept.dim}; this model is SDXL and needs clip_l + clip_g"
            )
        check_sdxl_parts(concept.parts, f"embedding {concept.token!r}")
        for part, w in zip(("clip_l", "clip_g"), widths):
            if concept.parts[part].shape[1] != w:
                raise OnewordError(
                    f"embedding {concept.token!r} {part} has width {concept.parts[part].shape[1]}; "
                    f"this SDXL model's encoder has {w}"
                )
        return torch.cat([concept.parts["clip_l"], concept.parts["clip_g"]], dim=-1)

    def concept(self, pipe, token: str, vectors: torch.Tensor, meta: dict) -> Concept:
        parts = {k: v.contiguous() for k, v in self.parts(pipe, vectors).items()}
        widths = "+".join(str(v.shape[-1]) for v in parts.values())
        return Concept(
            token=token,
            vectors=parts["clip_l"],
            parts=parts,
            meta={**meta, "text_width": widths, "model_family": "sdxl"},
        )

    # ------------------------------------------------------------------------------------ conditioning
    def _encode(self, model, ids: torch.Tensor):
        """(penultimate hidden states of both encoders side by side, pooled output of the second)."""
        out1 = model.pipe.text_encoder(ids[:, 0], output_hidden_states=True)
        out2 = model.pipe.text_encoder_2(ids[:, 1], output_hidden_states=True)
        hidden = torch.cat([out1.hidden_states[-2], out2.hidden_states[-2]], dim=-1)
        return hidden.to(model.dtype), out2.text_embeds.to(model.dtype)

    def unet_conditioning(self, model, ids, sizes=None) -> dict:
        hidden, pooled = self._encode(model, ids)
        if sizes is None:
            r = float(model.resolution)
            sizes = torch.tensor([[r, r, 0.0, 0.0, r, r]], device=ids.device).expand(len(ids), -1)
        return {
            "encoder_hidden_states": hidden,
            "added_cond_kwargs": {"text_embeds": pooled, "time_ids": sizes.to(model.dtype)},
        }

    def pipe_embeds(self, model, tokenizer, prompts, negatives) -> dict:
        cond, pooled = self._encode(model, ids_of(tokenizer, prompts, model.device))
        if model.pipe.config.force_zeros_for_empty_prompt and not any(negatives):  # as the pipeline does
            uncond, uncond_pooled = torch.zeros_like(cond), torch.zeros_like(pooled)
        else:
            uncond, uncond_pooled = self._encode(model, ids_of(tokenizer, negatives, model.device))
        return {
            "prompt_embeds": cond,
            "negative_prompt_embeds": uncond,
            "pooled_prompt_embeds": pooled,
            "negative_pooled_prompt_embeds": uncond_pooled,
        }

    def sampling_conditioning(self, model, prompt, negative, k, cfg, size) -> dict:
        pipe = model.pipe
        cond, uncond, pooled, uncond_pooled = pipe.encode_prompt(
            prompt, None, model.device, k, cfg, negative_prompt=negative
        )
        h, w = size
        time_ids = torch.tensor([[h, w, 0, 0, h, w]], device=model.device, dtype=cond.dtype).expand(k, -1)
        if cfg:
            cond, pooled = torch.cat([uncond, cond]), torch.cat([uncond_pooled, pooled])
            time_ids = torch.cat([time_ids, time_ids])
        return {"encoder_hidden_states": cond, "added_cond_kwargs": {"text_embeds": pooled, "time_ids": time_ids}}

    def vae_encode_dtype(self, vae) -> torch.dtype:
        return torch.float32 if vae.dtype == torch.float16 else vae.dtype
