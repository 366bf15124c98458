"""Putting learned words into a model: tokenizer entries and text-encoder rows, and prompts that use them.

:func:`install_concepts` adds each word exactly as diffusers' ``load_textual_inversion`` does (it is what it
calls), after checking every word first so that a refusal leaves the model untouched.
:func:`expand_prompt` is the one prompt expander: an n-vector word ``tok`` is spelled
``tok tok_1 ... tok_{n-1}`` (:func:`~oneword.concept.vector_token_names`) wherever the tokenizer would see it.
"""

from __future__ import annotations

import re

import torch

from .concept import Concept, check_concept, check_token_name, vector_token_names, width_name
from .errors import OnewordError


def _pipe_of(model_or_pipe):
    pipe = getattr(model_or_pipe, "pipe", model_or_pipe)
    if not hasattr(pipe, "tokenizer") or not hasattr(pipe, "text_encoder") or pipe.tokenizer is None:
        raise OnewordError("install_concepts needs a diffusers pipeline (or a model with .pipe)")
    return pipe


def _vocab_conflict(tokenizer, name: str, allow_vocab_words: bool) -> str | None:
    vocab = tokenizer.get_vocab()
    added = {k.lower() for k in getattr(tokenizer, "added_tokens_encoder", {})}
    if name.lower() in added:
        return (
            f"token {name!r} is already added to this model's tokenizer (an embedding is already loaded under "
            f"that name); rename one word: oneword convert FILE NEW_FILE --token NEW_NAME"
        )
    if name in vocab and not allow_vocab_words:
        return (
            f"token {name!r} is already a word in this model's vocabulary; pick another name such as <{name}> "
            f"(oneword convert FILE NEW_FILE --token <{name}> renames a file's word)"
        )
    if not allow_vocab_words:
        pieces = tokenizer.tokenize(name)
        if len(pieces) == 1 and pieces[0] in vocab and pieces[0] not in added:
            return (
                f"token {name!r} is already the vocabulary word {pieces[0]!r}; pick another name such as "
                f"<{name}> (oneword convert FILE NEW_FILE --token <{name}> renames a file's word)"
            )
    return None


def check_token_free(tokenizer, token: str, n_vectors: int = 1, allow_vocab_words: bool = False) -> None:
    """Raise OnewordError unless ``token`` (and token_1..token_{n-1}) can be added to ``tokenizer`` as new
    words: not already added (case-insensitive, as CLIP lower-cases), and not an ordinary vocabulary word
    (e.g. "cat", which transformers 5's ``add_tokens`` accepts silently) unless ``allow_vocab_words``."""
    check_token_name(token, "token")
    for i, name in enumerate(vector_token_names(token, n_vectors)):
        why = _vocab_conflict(tokenizer, name, allow_vocab_words or i > 0)
        if why:
            raise OnewordError(why)


def install_concepts(model_or_pipe, concepts, allow_vocab_words: bool = False) -> list[str]:
    """Add each concept's tokens (tok, tok_1, ..., tok_{n-1}) to the pipeline's tokenizer and text encoder
    exactly as diffusers' ``load_textual_inversion`` does (it is what we call), after checking everything
    first so that a refusal leaves the model untouched. Returns the tokens added.

    Also gives the pipeline a prompt expander that handles upper-case multi-vector tokens and is
    idempotent (diffusers' own drops vectors 2..n of a token like <MyCat>; see :func:`expand_prompt`).
    """
    pipe = _pipe_of(model_or_pipe)
    if isinstance(concepts, Concept):
        concepts = [concepts]
    concepts = [check_concept(c, "embedding") for c in concepts]
    tok, te = pipe.tokenizer, pipe.text_encoder
    width = int(te.get_input_embeddings().weight.shape[1])
    te2, tok2 = getattr(pipe, "text_encoder_2", None), getattr(pipe, "tokenizer_2", None)
    concepts = [c for c in concepts if not _already_installed(pipe, c)]
    names_seen: set[str] = set()
    for c in concepts:
        if c.parts is not None:
            if te2 is None:
                raise OnewordError(
                    f"embedding {c.token!r} is an SDXL embedding (clip_l 768 + clip_g 1280); this "
                    f"model is SD1.x/2.x with text width {width}"
                )
            w2 = int(te2.get_input_embeddings().weight.shape[1])
            for part, w in (("clip_l", width), ("clip_g", w2)):
                if c.parts[part].shape[1] != w:
                    raise OnewordError(
                        f"embedding {c.token!r} {part} has width {c.parts[part].shape[1]}; "
                        f"this SDXL model's encoder has {w}"
                    )
        else:
            if te2 is not None:
                raise OnewordError(
                    f"embedding {c.token!r} is a single-encoder (SD1.x/2.x) embedding; this model is "
                    "SDXL and needs clip_l + clip_g"
                )
            if c.dim != width:
                raise OnewordError(
                    f"embedding {c.token!r} was made for a model with text width {c.dim}"
                    f"{width_name(c.dim)} (e.g. SD1.x=768, SD2.x=1024); this model has {width}"
                )
        for i, name in enumerate(c.tokens):
            if name.lower() in names_seen:
                raise OnewordError(
                    f"two embeddings would both add the token {name!r}; rename one: oneword convert "
                    "FILE NEW_FILE --token NEW_NAME"
                )
            names_seen.add(name.lower())
            why = _vocab_conflict(tok, name, allow_vocab_words or i > 0)
            if why:
                raise OnewordError(why)
    added: list[str] = []
    devices = (
        [te.device.index if te.device.index is not None else torch.cuda.current_device()]
        if te.device.type == "cuda"
        else []
    )
    for c in concepts:
        with torch.random.fork_rng(devices=devices):  # resizing samples new rows: keep the caller's RNG
            try:
                if c.parts is None:
                    pipe.load_textual_inversion(c.vectors, token=c.token)
                else:
                    pipe.load_textual_inversion(c.parts["clip_l"], token=c.token, text_encoder=te, tokenizer=tok)
                    pipe.load_textual_inversion(c.parts["clip_g"], token=c.token, text_encoder=te2, tokenizer=tok2)
            except ValueError as e:
                raise OnewordError(f"cannot install {c.token!r}: {(str(e).splitlines() or [''])[0][:150]}") from None
        added += c.tokens
    _patch_prompt_expansion(pipe)
    return added


def _already_installed(pipe, c: Concept) -> bool:
    """True when every token of ``c`` is already added with exactly these vectors (installing twice is a no-op)."""
    added = getattr(pipe.tokenizer, "added_tokens_encoder", {}) or {}
    ids = [added.get(t) for t in c.tokens]
    if None in ids or vector_token_names(c.token, c.n_vectors + 1)[-1] in added:
        return False
    if c.parts is None:
        pairs = [(pipe.tokenizer, pipe.text_encoder, c.vectors)]
    else:  # SDXL: both encoders must hold their part
        pairs = [
            (pipe.tokenizer, pipe.text_encoder, c.parts["clip_l"]),
            (getattr(pipe, "tokenizer_2", None), getattr(pipe, "text_encoder_2", None), c.parts["clip_g"]),
        ]
    for tok, te, vectors in pairs:
        if tok is None or te is None:
            return False
        got = [(getattr(tok, "added_tokens_encoder", {}) or {}).get(t) for t in c.tokens]
        table = te.get_input_embeddings().weight
        if None in got or table.shape[1] != vectors.shape[1]:
            return False
        if not torch.equal(table[got].detach().float().cpu(), vectors.to(table.dtype).float()):
            return False
    return True


def _multi_vector_groups(tokenizer) -> dict[str, int]:
    """{tok: n} for every word added to ``tokenizer`` with vector tokens tok_1, ..., tok_{n-1}."""
    enc = getattr(tokenizer, "added_tokens_encoder", {}) or {}
    groups = {}
    for t in enc:
        n = 1
        while vector_token_names(t, n + 1)[-1] in enc:
            n += 1
        if n > 1:
            groups[t] = n
    return groups


def _expand(prompt: str, groups: dict[str, int]) -> str:
    if not groups:
        return prompt
    alts = []
    for t in sorted(groups, key=len, reverse=True):
        n = groups[t]
        tail = "".join(rf"\s+{re.escape(name)}" for name in vector_token_names(t, n)[1:])
        alts.append((t, n, re.compile(rf"{re.escape(t)}(?:{tail})?(?!_\d)", re.IGNORECASE) if tail else None))
    pattern = re.compile("|".join(f"(?:{p.pattern})" for _, _, p in alts if p), re.IGNORECASE)
    by_lower = {t.lower(): (t, n) for t, n, _ in alts}

    def repl(m):
        head = m.group(0).split()[0]
        t, n = by_lower.get(head.lower(), (head, 1))
        return " ".join([head] + vector_token_names(t, n)[1:])

    return pattern.sub(repl, prompt)


def expand_prompt(prompt, concepts_or_tokenizer):
    """Spell each multi-vector word ``tok`` as ``tok tok_1 ... tok_{n-1}`` (what the tokenizer needs).

    ``prompt``: a string or a list of strings. ``concepts_or_tokenizer``: a Concept, a list of Concepts, a
    mapping {token: n_vectors}, or a tokenizer (then every multi-vector word added to it).

    Matching follows the tokenizer rather than the words of the prompt: CLIP's tokenizer lower-cases its
    input and splits an added token out of any surrounding text, so a word is found case-insensitively and
    anywhere ("<MyCat>," and "(<mycat>)" are expanded; "<cat>s" becomes "<cat> <cat>_1s"), and the spelling
    it was written with is kept. The expansion is idempotent: an already expanded prompt is left as it is.
    diffusers' own ``maybe_convert_prompt`` replaces substrings case-sensitively after tokenizing, so it
    misses vectors 2..n of an upper-case token like <MyCat> and expands an expanded prompt again; pipelines
    that went through :func:`install_concepts` use this function instead. Call it when you tokenize prompts
    yourself.
    """
    c = concepts_or_tokenizer
    if isinstance(c, Concept):
        c = [c]
    if isinstance(c, dict):
        groups = {str(t): int(n) for t, n in c.items() if int(n) > 1}
    elif isinstance(c, (list, tuple)):
        groups = {x.token: x.n_vectors for x in c if x.n_vectors > 1}
    else:
        groups = _multi_vector_groups(c)
    if isinstance(prompt, (list, tuple)):
        return [_expand(p, groups) for p in prompt]
    return _expand(prompt, groups)


def _patch_prompt_expansion(pipe) -> None:
    """Replace the pipeline's multi-vector expansion (used inside its __call__) with ours."""

    def _maybe_convert_prompt(prompt, tokenizer):
        return _expand(prompt, _multi_vector_groups(tokenizer))

    try:
        object.__setattr__(pipe, "_maybe_convert_prompt", _maybe_convert_prompt)
    except (AttributeError, TypeError):
        pass
