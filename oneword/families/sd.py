"""Stable Diffusion 1.x / 2.x: one text encoder (CLIP ViT-L 768 or OpenCLIP ViT-H 1024); the UNet is conditioned
on its last hidden state alone."""

from __future__ import annotations

import torch

from ..concept import Concept
from ..errors import OnewordError
from .base import Encoder, Family, ids_of


class SD(Family):
    name = "sd"
    label = "SD1.x/2.x"

    def encoders(self, pipe) -> list[Encoder]:
        return [Encoder("text", pipe.tokenizer, pipe.text_encoder, slice(None))]

    def word_vectors(self, pipe, concept: Concept) -> torch.Tensor:
        if concept.parts is not None:
            raise OnewordError(
                f"embedding {concept.token!r} is an SDXL embedding (clip_l 768 + clip_g 1280); this "
                f"model is SD1.x/2.x with text width {self.word_width(pipe)}"
            )
        v = torch.as_tensor(concept.vectors)
        return v.reshape(-1, v.shape[-1])  # (learned_words checks the width)

    def concept(self, pipe, token: str, vectors: torch.Tensor, meta: dict) -> Concept:
        return Concept(token=token, vectors=vectors, meta={**meta, "text_width": str(vectors.shape[-1])})

    def unet_conditioning(self, model, ids, sizes=None) -> dict:
        return {"encoder_hidden_states": model.text_encoder(ids)[0].to(model.dtype)}

    def pipe_embeds(self, model, tokenizer, prompts, negatives) -> dict:
        cond = model.text_encoder(ids_of(tokenizer, prompts, model.device))[0]
        uncond = model.text_encoder(ids_of(tokenizer, negatives, model.device))[0]
        return {"prompt_embeds": cond.to(model.dtype), "negative_prompt_embeds": uncond.to(model.dtype)}

    def sampling_conditioning(self, model, prompt, negative, k, cfg, size) -> dict:
        cond, uncond = model.pipe.encode_prompt(prompt, model.device, k, cfg, negative_prompt=negative)
        return {"encoder_hidden_states": torch.cat([uncond, cond]) if cfg else cond}
