"""What a model family is to the engine: which text encoders get the learned word, how a prompt becomes the
UNet's conditioning, and what else the model needs. The engine (invert, sampling, editing, evaluation) asks
the family and never branches on the model.

A learned word is ONE tensor ``[n, width]`` for every family: for a model with several text encoders the
encoders' vectors side by side (SDXL: ``[n, 768 + 1280]``, clip_l then clip_g), so that the optimiser, the
non-finite guard, the CUDA graph and the checkpoint handle one parameter whatever the family. The family
splits it into its encoders' parts (:meth:`Family.parts`) and back (:meth:`Family.word_vectors`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..concept import Concept


@dataclass(frozen=True)
class Encoder:
    """One text encoder that gets the word: its part name in files, tokenizer, model and columns of the word."""

    part: str
    tokenizer: object
    text_encoder: object
    columns: slice

    @property
    def width(self) -> int:
        return int(self.text_encoder.config.hidden_size)


class Tokenizers(tuple):
    """One tokenizer per text encoder, used as one: called with ``return_tensors="pt"`` it gives ids
    ``[batch, encoders, length]``; everything else (vocabulary, token ids, lengths) is the first one's, as the
    encoders of one family share a vocabulary and differ only in padding."""

    def __call__(self, texts, **kw):
        out = [t(texts, **kw) for t in self]
        if kw.get("return_tensors") != "pt":
            return out[0]
        first = out[0]
        first["input_ids"] = torch.stack([o["input_ids"] for o in out], dim=-2)
        return first

    def __getattr__(self, name):
        return getattr(self[0], name)

    def __len__(self):  # the vocabulary size, as for one tokenizer (tuple length: len(tuple(self)))
        return len(self[0])


class Family:
    """The interface; see sd.py and sdxl.py."""

    name = "?"
    label = "?"
    default_resolution: int | None = None  # None: the UNet's sample size times the VAE factor

    def encoders(self, pipe) -> list[Encoder]:
        raise NotImplementedError

    def prepare(self, pipe) -> None:
        """Fix what a loaded pipeline needs before use (called once by models.load_model)."""

    def word_width(self, pipe) -> int:
        return sum(e.width for e in self.encoders(pipe))

    def tokenizer_for(self, tokenizers: list):
        """What the engine tokenizes with: one tokenizer, or a :class:`Tokenizers` for several encoders."""
        return tokenizers[0] if len(tokenizers) == 1 else Tokenizers(tokenizers)

    # ------------------------------------------------------------------------------------ the word
    def parts(self, pipe, vectors: torch.Tensor) -> dict[str, torch.Tensor]:
        """{part: [n, width]} of a word tensor."""
        return {e.part: vectors[..., e.columns] for e in self.encoders(pipe)}

    def word_vectors(self, pipe, concept: Concept) -> torch.Tensor:
        """A Concept as this family's word tensor; refuses a word of another family in one line."""
        raise NotImplementedError

    def concept(self, pipe, token: str, vectors: torch.Tensor, meta: dict) -> Concept:
        raise NotImplementedError

    # ------------------------------------------------------------------------------------ conditioning
    def unet_conditioning(self, model, ids: torch.Tensor, sizes: torch.Tensor | None) -> dict:
        """The UNet's keyword arguments besides (sample, timestep) for prompt ids from the engine's tokenizer;
        ``sizes`` [batch, 6]: each image's original height, width, crop top, left, target height, width."""
        raise NotImplementedError

    def pipe_embeds(self, model, tokenizer, prompts: list[str], negatives: list[str]) -> dict:
        """The pipeline's prompt-embedding arguments for prompts the given tokenizer(s) read (learned words)."""
        raise NotImplementedError

    def sampling_conditioning(
        self, model, prompt: str, negative: str | None, k: int, cfg: bool, size: tuple[int, int]
    ) -> dict:
        """UNet keyword arguments for sampling k images of `prompt` at `size` (h, w) with the pipeline's own
        prompt encoding (installed words), unconditional first when `cfg`."""
        raise NotImplementedError

    def vae_encode_dtype(self, vae) -> torch.dtype:
        """The precision photos are encoded in: the VAE's own, except float16 for a VAE that overflows in it."""
        return vae.dtype


def ids_of(tokenizer, texts: list[str], device) -> torch.Tensor:
    return tokenizer(
        texts, padding="max_length", max_length=tokenizer.model_max_length, truncation=True, return_tensors="pt"
    ).input_ids.to(device)
