"""What the pages of `oneword ui` do, through the library, without the web layer: the words of the run folder
(learned and dropped in), generation beside the caption baseline, edits, evaluation, init-word suggestions.

One model is loaded once in the server process and used by one request at a time. A word is installed in it
under a name made from its vectors (the prompt is rewritten to match): a word learned again, or two files with
the same token, never clash in the model.
"""

from __future__ import annotations

import io
import json
import re
import threading
from dataclasses import dataclass
from pathlib import Path

from ..errors import OnewordError
from .jobs import slug

WORDS_DIR = "words"  # dropped-in word files, re-written by oneword as .safetensors
EXPORTS_DIR = ".exports"  # converted files offered for download
WORD_ID = re.compile(r"^(run|file)/([A-Za-z0-9_][A-Za-z0-9_.-]{0,120})$")

# the tools `oneword convert --for` writes for (oneword.formats.TOOLS), and how each finds the word
TOOL_USE = {
    "automatic1111": "stable-diffusion-webui/embeddings/; the prompt word is the file name: {stem}",
    "forge": "Forge's embeddings/ folder; the prompt word is the file name: {stem}",
    "comfyui": "ComfyUI/models/embeddings/; write embedding:{stem} in the prompt",
    "invokeai": "InvokeAI's Model Manager; it is named after the file: {stem}",
    "kohya": "sd-scripts' --textual_inversion_embeddings; the prompt word is the file name: {stem}",
    "diffusers": "pipe.load_textual_inversion(FILE) adds the word {token}",
    "onetrainer": "OneTrainer: the embedding's base file",
    "oneword": "oneword and diffusers with this model (any text width): --embeds FILE",
}


@dataclass
class Word:
    id: str  # "run/<folder>" or "file/<name>.safetensors"
    token: str
    path: Path
    vectors: int
    source: str  # "learned" | "dropped in"
    detail: str

    @property
    def label(self) -> str:
        return f"{self.token} ({self.source}: {self.id.split('/', 1)[1]})"


class Workspace:
    def __init__(
        self, root: Path, model_spec=None, model_config=None, device=None, photos_root=None, prediction_type=None
    ):
        self.root = Path(root).resolve()
        self.root.mkdir(parents=True, exist_ok=True)
        self.photos_root = Path(photos_root or Path.cwd()).resolve()
        self.model_spec, self.model_config, self.device = model_spec, model_config, device
        self.prediction_type = prediction_type
        self._model = None
        self._judge = None
        self._load_lock = threading.Lock()
        self.busy = threading.Lock()  # one request on the model at a time

    # ----------------------------------------------------------------------------------------- model
    def model(self):
        with self._load_lock:
            if self._model is None:
                from .. import load_model

                self._model = load_model(
                    self.model_spec, device=self.device, config=self.model_config, prediction_type=self.prediction_type
                )
            return self._model

    def judge(self):
        """The CLIP judge for this model (the world's own for the world model), or a clear refusal."""
        with self._load_lock:
            if self._judge is None:
                from ..judges import load_judge

                model = self._model
                try:
                    self._judge = load_judge(None, model)
                except Exception as e:  # a hub CLIP that is not in the local cache, say
                    raise OnewordError(
                        f"no CLIP judge available for this model ({str(e).splitlines()[0][:160]})"
                    ) from None
            return self._judge

    def model_summary(self) -> str:
        m = self.model()
        ident = m.identity
        return (
            f"{'the embedded world model' if ident.get('kind') == 'world' else ident.get('source')} "
            f"({ident.get('pipeline')}, {ident.get('resolution')} px, text width {ident.get('text_width')}, "
            f"{m.device})"
        )

    # ----------------------------------------------------------------------------------------- words
    def words(self) -> list[Word]:
        from .. import load_concepts

        out = []
        for folder in sorted(
            p for p in self.root.iterdir() if p.is_dir() and not p.name.startswith(".") and p.name != WORDS_DIR
        ):
            f = folder / "learned_embeds.safetensors"
            if not f.is_file() or not WORD_ID.match(f"run/{folder.name}"):
                continue
            try:
                run = json.loads((folder / "run.json").read_text())
            except (OSError, ValueError):
                run = {}
            try:
                c = load_concepts(f)[0]
            except OnewordError:
                continue
            out.append(
                Word(
                    f"run/{folder.name}",
                    c.token,
                    f,
                    c.n_vectors,
                    "learned",
                    f"{run.get('status', '?').replace('_', ' ')} at step {run.get('step', '?')}",
                )
            )
        words_dir = self.root / WORDS_DIR
        if words_dir.is_dir():
            for f in sorted(words_dir.glob("*.safetensors")):
                if not WORD_ID.match(f"file/{f.name}"):
                    continue
                try:
                    c = load_concepts(f)[0]
                except OnewordError:
                    continue
                out.append(Word(f"file/{f.name}", c.token, f, c.n_vectors, "dropped in", c.meta.get("source", "")))
        return out

    def word(self, word_id: str) -> Word:
        """A word by id; ids come from the page, so only those the run folder lists are accepted."""
        if not isinstance(word_id, str) or not WORD_ID.match(word_id):
            raise OnewordError("choose a word from the list")
        for w in self.words():
            if w.id == word_id:
                return w
        raise OnewordError(f"{word_id} is not (or no longer) in the run folder")

    def concept(self, word_id: str):
        from .. import load_concepts

        return load_concepts(self.word(word_id).path)[0]

    def concepts(self, word_ids) -> list:
        ids = [w for w in (word_ids or []) if w]
        concepts = [self.concept(w) for w in ids]
        seen = {}
        for w, c in zip(ids, concepts):
            if c.token.lower() in seen:
                raise OnewordError(f"{seen[c.token.lower()]} and {w} are both called {c.token}: choose one")
            seen[c.token.lower()] = w
        return concepts

    def add_word_file(self, upload) -> str:
        """Read a dropped-in embedding (any format oneword reads) safely; keep each word as .safetensors."""
        from .. import save_concept
        from .security import read_words, upload_name

        concepts = read_words(upload)
        folder = self.root / WORDS_DIR
        folder.mkdir(exist_ok=True)
        kept = []
        for c in concepts:
            c.meta = {**c.meta, "source": f"dropped in as {upload_name(upload)}"}
            base = slug(c.token)
            for i in range(1, 1000):
                dest = folder / (f"{base}.safetensors" if i == 1 else f"{base}-{i}.safetensors")
                if not dest.exists():
                    break
            save_concept(c, dest, format="diffusers")
            kept.append(f"{c.token} ({c.n_vectors} x {c.dim})")
        return f"added {', '.join(kept)} from {upload_name(upload)}"

    def export(self, word_id: str, tool: str) -> tuple[Path, str]:
        """The word as the file `tool` loads as it is (oneword.formats.save_for_tool), to download, and how that
        tool finds it; "oneword": the diffusers layout at any width (what `learn` writes)."""
        from ..formats import TOOLS, save_concept, save_for_tool

        if tool not in TOOL_USE:
            raise OnewordError(f"choose one of {', '.join(TOOL_USE)}")
        c = self.concept(word_id)
        dest = self.root / EXPORTS_DIR / tool / slug(c.token)
        if tool == "oneword":
            out, label = save_concept(c, dest.with_suffix(".safetensors"), format="diffusers"), "oneword"
        else:
            out, label = save_for_tool(c, dest, tool), TOOLS[tool][0]
        return out, f"{c.token} for {label}: {out.name} -> " + TOOL_USE[tool].format(stem=out.stem, token=c.token)

    def delete(self, word_id: str, jobs=None) -> str:
        import shutil

        w = self.word(word_id)
        kind, name = word_id.split("/", 1)
        if kind == "run":
            if jobs is not None and jobs.get(name) is not None:
                jobs.delete(name)
            else:
                folder = (self.root / name).resolve()
                if folder.parent != self.root:
                    raise OnewordError("not a run folder of this server")
                shutil.rmtree(folder)
            return f"deleted the run {name} ({w.token})"
        path = (self.root / WORDS_DIR / name).resolve()
        if path.parent != (self.root / WORDS_DIR).resolve():
            raise OnewordError("not a word file of this server")
        path.unlink()
        return f"deleted {name} ({w.token})"

    def inspect(self, word_id: str) -> str:
        from ..formats import describe

        c = self.concept(word_id)
        with self.busy:
            m = self.model()
            text = describe(c, m.tokenizer, m.text_encoder)
        family = _family(c.dim, m.hidden_size)
        return f"{family}\n\n{text}"

    # ----------------------------------------------------------------------------------------- generation
    def _aliased(self, concepts, prompt: str) -> tuple[list, str]:
        """Each word under a name made from its vectors, and the prompt written with those names. The model keeps
        every word it was given under such a name, so the same word is installed once, and a word learned again
        (or another file using the same token) is a different name: they never clash in the one model."""
        import dataclasses
        import hashlib

        out = []
        for c in sorted(concepts, key=lambda c: -len(c.token)):  # a token inside a longer one is replaced last
            digest = hashlib.sha256(c.vectors.detach().float().cpu().numpy().tobytes()).hexdigest()[:12]
            alias = f"<w{digest}>"
            prompt = re.sub(re.escape(c.token), alias, prompt, flags=re.IGNORECASE)
            out.append(dataclasses.replace(c, token=alias))
        return out, prompt

    def generate(
        self, word_ids, prompt: str, n: int = 4, seed: int = 0, steps=None, guidance=None, caption: str | None = None
    ) -> dict:
        """Images of `prompt` and, with the same seeds, of the caption baseline (each word replaced by its init
        words, or by `caption`)."""
        from .. import generate

        prompt = (prompt or "").strip()
        if not prompt:
            raise OnewordError("write a prompt, e.g. a photo of <your-word>")
        n, seed = _int(n, "images", 1, 64), _int(seed, "seed", 0, 2**31 - 1)
        concepts = self.concepts(word_ids)
        missing = [c.token for c in concepts if not _uses(prompt, c.token)]
        if missing:
            raise OnewordError(f"the prompt does not use {', '.join(missing)}; write it into the prompt")
        steps = _int(steps, "steps", 1, 500) if steps else None
        base_prompt = baseline_prompt(prompt, concepts, caption)
        with self.busy:
            model = self.model()
            words, text = self._aliased(concepts, prompt)
            images = generate(model, text, words, n=n, steps=steps, guidance=guidance, seed=seed)
            baseline = generate(model, base_prompt, (), n=n, steps=steps, guidance=guidance, seed=seed)
        return {
            "images": images,
            "seeds": list(range(seed, seed + n)),
            "baseline": baseline,
            "baseline_prompt": base_prompt,
            "prompt": prompt,
        }

    def variations(self, word_id: str, n: int = 8, seed: int = 0) -> dict:
        c = self.concept(word_id)
        from ..templates import default_template

        template = default_template(c.meta.get("property"))
        return self.generate([word_id], template.format(c.token), n=n, seed=seed)

    def edit(self, photo, mask, prompt: str, word_ids, seed: int = 0, strength: float = 1.0, steps=None) -> dict:
        from .. import edit
        from ..editing import load_mask

        prompt = (prompt or "").strip()
        if not prompt:
            raise OnewordError("write what the painted region should show, e.g. a photo of <your-word>")
        m = load_mask(mask, photo.size)
        concepts = self.concepts(word_ids)
        with self.busy:
            words, text = self._aliased(concepts, prompt)
            out = edit(
                self.model(),
                photo,
                m,
                text,
                words,
                strength=float(strength),
                steps=_int(steps, "steps", 1, 500) if steps else None,
                seed=_int(seed, "seed", 0, 2**31 - 1),
            )
        return {"image": out[0], "mask": m, "fraction": float(m.mean())}

    # ----------------------------------------------------------------------------------------- evaluation
    def photos_of(self, word_id: str) -> list:
        """A learned word's training photos (its run's photo folder); a dropped-in word has none here."""
        from ..data import read_photos

        w = self.word(word_id)
        if not w.id.startswith("run/"):
            raise OnewordError(
                f"{w.token} was dropped in: drop photos of its concept (or name a folder) to evaluate it"
            )
        try:
            run = json.loads((w.path.parent / "run.json").read_text())
        except (OSError, ValueError):
            raise OnewordError(f"{w.id} has no readable run.json") from None
        return read_photos(run.get("photos") or w.path.parent / "photos")

    def evaluate(
        self, word_id: str, photos=None, caption: str | None = None, n: int = 8, steps=None, bootstrap: int = 500
    ) -> dict:
        from ..evaluation import EvalConfig, evaluate

        c = self.concept(word_id)
        photos = photos or self.photos_of(word_id)
        caption = (caption or "").strip() or _article(c.meta.get("init") or "object")
        kind = c.meta.get("property") if c.meta.get("property") in ("object", "style") else "object"
        model = self.model()
        steps = _int(steps, "steps", 1, 500) if steps else int(model.defaults.get("generate", {}).get("steps", 50))
        cfg = EvalConfig(n=_int(n, "samples", 1, 256), steps=steps, bootstrap=int(bootstrap))
        with self.busy:
            judge = self.judge()
            report = evaluate(model, photos, [c, caption], judge=judge, kind=kind, config=cfg, keep_images=True)
        return report

    def suggest_init(self, images, kind: str = "object") -> dict:
        """`learn --init auto`'s ranking of the model's vocabulary against the photos (a CLIP judge is needed)."""
        from ..init_words import auto_words

        if not images:
            raise OnewordError("drop the photos first")
        with self.busy:
            return auto_words(self.model(), images, kind, 1, judge=self.judge())


# --------------------------------------------------------------------------------------------- helpers
def _uses(prompt: str, token: str) -> bool:
    return token.lower() in prompt.lower()


def baseline_prompt(prompt: str, concepts, caption: str | None = None) -> str:
    """The prompt with each learned token replaced by its init words (or by `caption` when one word)."""
    out = prompt
    for c in concepts:
        words = (caption or "").strip() if caption and len(concepts) == 1 else (c.meta.get("init") or "object")
        out = re.sub(re.escape(c.token), lambda _m, w=words: w, out, flags=re.IGNORECASE)
    return re.sub(r"\s+", " ", out).strip()


def _article(word: str) -> str:
    return f"{'an' if word[:1].lower() in 'aeiou' else 'a'} {word}"


def _family(dim: int, model_dim: int) -> str:
    names = {
        768: "SD1.x (CLIP ViT-L, 768 wide)",
        1024: "SD2.x (OpenCLIP ViT-H, 1024 wide)",
        1280: "SDXL second encoder (1280 wide)",
    }
    fits = "fits this model" if dim == model_dim else f"does not fit this model ({model_dim} wide)"
    return f"model family: {names.get(dim, f'{dim} wide')}; {fits}"


def _int(value, what: str, lo: int, hi: int) -> int:
    try:
        v = int(value)
    except (TypeError, ValueError):
        raise OnewordError(f"{what} must be a whole number") from None
    if not lo <= v <= hi:
        raise OnewordError(f"{what} must be between {lo} and {hi}")
    return v


def upscaled(image, least: int = 192):
    """World images are 32 px: enlarge them (nearest) so that a person can see them."""
    from PIL import Image

    f = max(1, -(-least // max(1, min(image.size))))
    return image if f == 1 else image.resize((image.width * f, image.height * f), Image.NEAREST)


def scatter_plot(report: dict):
    """Reconstruction against editability with 95% intervals, one point per subject (the paper's figure)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from PIL import Image

    fig, ax = plt.subplots(figsize=(5, 4), dpi=100)
    for r, colour in zip(report["results"], ("#1f77b4", "#d62728", "#2ca02c", "#9467bd")):
        rec, ed = r["reconstruction"], r.get("editability")
        if not ed:
            continue
        ax.errorbar(
            ed["mean"],
            rec["mean"],
            xerr=[[ed["mean"] - ed["ci"][0]], [ed["ci"][1] - ed["mean"]]],
            yerr=[[rec["mean"] - rec["ci"][0]], [rec["ci"][1] - rec["mean"]]],
            fmt="o",
            color=colour,
            capsize=4,
            label=r["subject"],
        )
    ax.axhline(report["reconstruction_ceiling"], color="grey", lw=0.8, ls="--", label="photos' own similarity")
    ax.set_xlabel("editability (text-image similarity)")
    ax.set_ylabel("reconstruction (image-image similarity)")
    ax.legend(fontsize=8, loc="best")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    buf.seek(0)
    return Image.open(buf).convert("RGB")


def _md(text: str) -> str:
    """Text shown in Markdown as written (a token such as <my-cat> is not an HTML tag)."""
    import html

    return html.escape(str(text)).replace("|", "&#124;")


def report_table(report: dict) -> str:
    """The evaluation as a Markdown table (95% bootstrap intervals)."""
    from ..evaluation import fmt

    oracle = any("present_reconstruction" in r for r in report["results"])
    head = "| | reconstruction | editability |" + (" concept present | edit applied |" if oracle else "")
    lines = [head, "|---" * (head.count("|") - 1) + "|"]
    for r in report["results"]:
        row = f"| {_md(r['subject'])} | {fmt(r['reconstruction'])} | {fmt(r.get('editability'))} |"
        if oracle:
            row += f" {fmt(r.get('present_reconstruction'), 2)} | {fmt(r.get('edit_applied'), 2)} |"
        lines.append(row)
    c = report["config"]
    lines.append("")
    lines.append(
        f"{c['n']} samples per prompt, {c['steps']} steps, guidance {c['guidance']:g}, judge {_md(report['judge'])}; "
        f"the photos' own mutual similarity is {report['reconstruction_ceiling']:.3f}. "
        "Brackets: 95% bootstrap intervals."
    )
    return "\n".join(lines)
