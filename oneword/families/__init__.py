"""Model families: what differs between SD1.x/2.x and SDXL, in one place (:class:`~.base.Family`)."""

from __future__ import annotations

from .base import Encoder, Family, Tokenizers
from .sd import SD
from .sdxl import SDXL

FAMILIES = {"sd": SD(), "sdxl": SDXL()}


def family_of(pipe) -> Family:
    """The family of a loaded diffusers pipeline: SDXL when it has a second text encoder."""
    return FAMILIES["sdxl" if getattr(pipe, "text_encoder_2", None) is not None else "sd"]


__all__ = ["FAMILIES", "Encoder", "Family", "SD", "SDXL", "Tokenizers", "family_of"]
