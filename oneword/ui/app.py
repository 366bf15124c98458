"""The pages of `oneword ui` (Gradio): Learn, Generate, Edit, Words, Evaluate.

Every handler is short: it reads the page's fields, calls oneword.ui.service / oneword.ui.jobs, and puts a
one-line message in the tab's message box; a refusal (OnewordError) is that message, never a stack trace.
The Learn tab redraws the selected job once a second from the server's state, so every tab and every reload
shows the same job.
"""

from __future__ import annotations

import html
import math
import sys
import time
import traceback
from pathlib import Path

import gradio as gr

from ..errors import OnewordError
from . import security
from .jobs import FINISHED, JobManager
from .service import TOOL_USE, Workspace, report_table, scatter_plot, upscaled

TICK_S = 1.0
CSS = """
#learn-status progress { width: 100%; height: 18px; }
.ow-badge { display: inline-block; padding: 1px 8px; border-radius: 9px; background: #e5e7eb; font-weight: 600; }
.ow-running { background: #dbeafe; } .ow-done, .ow-early_stopped { background: #dcfce7; }
.ow-failed { background: #fee2e2; } .ow-interrupted, .ow-stopping { background: #fef3c7; }
.ow-msg p { margin: 0; }
"""


def _say(e: BaseException) -> str:
    if isinstance(e, OnewordError):
        return f"**Refused:** {html.escape(str(e))}"
    print(f"oneword ui: {type(e).__name__}: {e}\n{traceback.format_exc()}", file=sys.stderr)
    return f"**Error:** {type(e).__name__}: {html.escape(str(e).splitlines()[0] if str(e) else '')}"


def _num(v, default=None):
    if v is None or (isinstance(v, float) and math.isnan(v)) or v == "":
        return default
    return v


def build_app(ws: Workspace, jobs: JobManager) -> gr.Blocks:
    from .. import LearnConfig

    world = ws.model_spec is None
    from ..sampling import sampling_defaults

    d = LearnConfig.with_defaults(ws.model())  # the settings `oneword learn` would use on this model
    sample_steps = int(sampling_defaults(ws.model())["steps"])

    with gr.Blocks(title="oneword", analytics_enabled=False) as app:
        gr.Markdown(
            f"## oneword — learn a word for your photos\nModel: {html.escape(ws.model_summary())}. "
            f"Run folder: `{html.escape(str(ws.root))}`.",
            elem_id="ow-header",
        )
        with gr.Tabs(elem_id="ow-tabs"):
            # ================================================================================== Learn
            with gr.Tab("Learn", id="learn", elem_id="tab-learn"):
                with gr.Row():
                    with gr.Column(scale=1):
                        photos, folder = _photo_inputs(ws, "learn", "Photos of the concept (3-5)")
                        token = gr.Textbox(label="New word", placeholder="<my-cat>", elem_id="learn-token")
                        with gr.Row():
                            init = gr.Textbox(
                                label="Init word (a word for what the photos show; auto or encoder: from the photos)",
                                placeholder="cat",
                                elem_id="learn-init",
                                scale=3,
                            )
                            suggest = gr.Button("Suggest", elem_id="learn-suggest", scale=1)
                        suggestions = gr.Markdown(elem_id="learn-suggestions")
                        prop = gr.Radio(
                            ["object", "style"], value="object", label="The photos share an", elem_id="learn-property"
                        )
                        with gr.Accordion("Advanced settings", open=False, elem_id="learn-advanced"):
                            steps = gr.Number(
                                value=d.steps,
                                label="Steps at most (early stopping may end sooner)",
                                precision=0,
                                elem_id="learn-steps",
                            )
                            early = gr.Checkbox(
                                value=True,
                                label="Stop early when the validation loss stops falling",
                                elem_id="learn-early",
                            )
                            preview_every = gr.Number(
                                value=50 if world else 200,
                                precision=0,
                                label="Preview every N steps (0: never)",
                                elem_id="learn-preview-every",
                            )
                            preview_prompt = gr.Textbox(
                                label="Preview prompt (empty: a photo of the word)", elem_id="learn-preview-prompt"
                            )
                            save_every = gr.Number(
                                value=25, precision=0, label="Checkpoint every N steps", elem_id="learn-save-every"
                            )
                            with gr.Row():
                                lr = gr.Number(value=d.lr, label="Learning rate", elem_id="learn-lr")
                                batch = gr.Number(
                                    value=d.batch_size, label="Batch size", precision=0, elem_id="learn-batch"
                                )
                                vectors = gr.Number(
                                    value=d.vectors, label="Vectors", precision=0, elem_id="learn-vectors"
                                )
                                seed = gr.Number(value=d.seed, label="Seed", precision=0, elem_id="learn-seed")
                        start = gr.Button("Start learning", variant="primary", elem_id="learn-start")
                        learn_msg = gr.Markdown(elem_id="learn-msg", elem_classes="ow-msg")
                    with gr.Column(scale=2):
                        job = gr.Dropdown(label="Job", choices=[], elem_id="learn-job", interactive=True)
                        status = gr.HTML(elem_id="learn-status")
                        with gr.Row():
                            stop = gr.Button("Stop (checkpoint)", elem_id="learn-stop")
                            resume_steps = gr.Number(
                                label="Resume up to step (empty: as before)", precision=0, elem_id="learn-resume-steps"
                            )
                            resume = gr.Button("Resume", elem_id="learn-resume")
                            download = gr.DownloadButton("Download the word", visible=False, elem_id="learn-download")
                        job_msg = gr.Markdown(elem_id="learn-job-msg", elem_classes="ow-msg")
                        plot = gr.LinePlot(
                            x="step", y="loss", color="curve", label="Loss", elem_id="learn-plot", height=300
                        )
                        preview = gr.Image(
                            label="Latest preview",
                            type="pil",
                            interactive=False,
                            format="png",
                            elem_id="learn-preview",
                            height=280,
                        )
                        queue = gr.Markdown(elem_id="learn-queue")
                seen = gr.State({})

            # ================================================================================== Generate
            with gr.Tab("Generate", id="generate", elem_id="tab-generate") as gen_tab:
                with gr.Row():
                    gen_words = gr.Dropdown(label="Words", multiselect=True, choices=[], elem_id="gen-words", scale=2)
                    gen_refresh = gr.Button("Refresh words", elem_id="gen-refresh", scale=0)
                gen_prompt = gr.Textbox(
                    label="Prompt (use the words' tokens)", placeholder="a photo of <my-cat>", elem_id="gen-prompt"
                )
                with gr.Row():
                    gen_n = gr.Slider(1, 16, value=4, step=1, label="Images", elem_id="gen-n")
                    gen_seed = gr.Number(value=0, precision=0, label="First seed", elem_id="gen-seed")
                    gen_steps = gr.Number(value=sample_steps, label="Sampling steps", precision=0, elem_id="gen-steps")
                    gen_caption = gr.Textbox(label="Caption baseline (empty: the init words)", elem_id="gen-caption")
                with gr.Row():
                    gen_go = gr.Button("Generate", variant="primary", elem_id="gen-go")
                    gen_var = gr.Button("Variations of the first word", elem_id="gen-variations")
                gen_msg = gr.Markdown(elem_id="gen-msg", elem_classes="ow-msg")
                with gr.Row():
                    gen_images = gr.Gallery(
                        label="With the words", columns=4, format="png", elem_id="gen-images", height=420
                    )
                    gen_base = gr.Gallery(
                        label="Caption baseline (same seeds)",
                        columns=4,
                        format="png",
                        elem_id="gen-baseline",
                        height=420,
                    )

            # ================================================================================== Edit
            with gr.Tab("Edit", id="edit", elem_id="tab-edit") as edit_tab:
                with gr.Row():
                    with gr.Column():
                        edit_file = gr.File(label="Photo to edit", file_types=["image"], elem_id="edit-photo")
                        editor = gr.ImageEditor(
                            label="Paint the region to change (white brush)",
                            sources=(),
                            type="numpy",
                            format="png",
                            layers=False,
                            transforms=(),
                            brush=gr.Brush(
                                colors=["#ffffff"], default_color="#ffffff", default_size=24, color_mode="fixed"
                            ),
                            canvas_size=(384, 384),
                            elem_id="edit-canvas",
                            height=460,
                        )
                        edit_box = gr.Textbox(label="…or a box x0,y0,x1,y1 in photo pixels", elem_id="edit-box")
                    with gr.Column():
                        edit_words = gr.Dropdown(label="Words", multiselect=True, choices=[], elem_id="edit-words")
                        edit_prompt = gr.Textbox(
                            label="What the region should show",
                            placeholder="a photo of <my-cat>",
                            elem_id="edit-prompt",
                        )
                        with gr.Row():
                            edit_seed = gr.Number(value=0, precision=0, label="Seed", elem_id="edit-seed")
                            edit_strength = gr.Slider(
                                0.1, 1.0, value=1.0, step=0.05, label="Strength", elem_id="edit-strength"
                            )
                        edit_go = gr.Button("Edit", variant="primary", elem_id="edit-go")
                        edit_msg = gr.Markdown(elem_id="edit-msg", elem_classes="ow-msg")
                        with gr.Row():
                            edit_mask = gr.Image(
                                label="Mask", interactive=False, format="png", elem_id="edit-mask", height=220
                            )
                            edit_out = gr.Image(
                                label="Edited (background restored)",
                                interactive=False,
                                format="png",
                                elem_id="edit-result",
                                height=220,
                            )
                edit_photo = gr.State(None)

            # ================================================================================== Words
            with gr.Tab("Words", id="words", elem_id="tab-words") as words_tab:
                words_table = gr.Dataframe(
                    headers=["word", "vectors", "source", "file", "state"],
                    interactive=False,
                    elem_id="words-table",
                    wrap=True,
                )
                with gr.Row():
                    with gr.Column():
                        word_pick = gr.Dropdown(label="Word", choices=[], elem_id="words-word")
                        with gr.Row():
                            inspect_go = gr.Button("Inspect", elem_id="words-inspect")
                            words_refresh = gr.Button("Refresh", elem_id="words-refresh")
                        tool = gr.Radio(list(TOOL_USE), value="oneword", label="Convert for", elem_id="words-tool")
                        convert_go = gr.Button("Convert", elem_id="words-convert")
                        word_file = gr.DownloadButton("Download", visible=False, elem_id="words-download")
                        with gr.Row():
                            sure = gr.Checkbox(
                                label="Yes, delete it (a learned word: its whole run folder)", elem_id="words-sure"
                            )
                            delete_go = gr.Button("Delete", variant="stop", elem_id="words-delete")
                    with gr.Column():
                        upload = gr.File(
                            label="Drop a word file (diffusers, AUTOMATIC1111, kohya, ComfyUI, InvokeAI: "
                            ".safetensors .bin .pt .png .webp)",
                            elem_id="words-upload",
                            file_types=[".safetensors", ".bin", ".pt", ".png", ".webp"],
                        )
                        words_msg = gr.Markdown(elem_id="words-msg", elem_classes="ow-msg")
                        inspect_out = gr.Textbox(
                            label="Inside the word", lines=12, interactive=False, elem_id="words-inspect-out"
                        )

            # ================================================================================== Evaluate
            with gr.Tab("Evaluate", id="evaluate", elem_id="tab-evaluate") as eval_tab:
                with gr.Row():
                    eval_word = gr.Dropdown(label="Word (learned or dropped in)", choices=[], elem_id="eval-word")
                    eval_caption = gr.Textbox(
                        label="Caption baseline / init words (empty: a + the word's init word)", elem_id="eval-caption"
                    )
                    eval_n = gr.Slider(2, 64, value=8, step=1, label="Samples per prompt", elem_id="eval-n")
                    eval_steps = gr.Number(
                        value=sample_steps, label="Sampling steps", precision=0, elem_id="eval-steps"
                    )
                with gr.Row():
                    eval_photos, eval_folder = _photo_inputs(
                        ws, "eval", "Photos of the concept (empty: a learned word's own training photos)"
                    )
                eval_go = gr.Button("Evaluate", variant="primary", elem_id="eval-go")
                eval_msg = gr.Markdown(elem_id="eval-msg", elem_classes="ow-msg")
                eval_table = gr.Markdown(elem_id="eval-table")
                with gr.Row():
                    eval_plot = gr.Image(
                        label="Reconstruction vs editability",
                        interactive=False,
                        format="png",
                        elem_id="eval-plot",
                        height=360,
                    )
                    eval_grid = gr.Image(
                        label="Samples: the word (top rows), the caption (bottom rows)",
                        interactive=False,
                        format="png",
                        elem_id="eval-samples",
                        height=360,
                    )

        timer = gr.Timer(TICK_S)

        # ====================================================================================== handlers
        def words_update(keep=None, multi=False):
            choices = [(w.label, w.id) for w in ws.words()]
            ids = [c[1] for c in choices]
            if multi:
                value = [v for v in (keep or []) if v in ids]
            else:
                value = keep if keep in ids else (ids[-1] if ids else None)
            return gr.update(choices=choices, value=value)

        def refresh_words(gen_keep, edit_keep, pick_keep, eval_keep):
            rows = [[w.token, w.vectors, w.source, w.id.split("/", 1)[1], w.detail] for w in ws.words()]
            return (
                words_update(gen_keep, True),
                words_update(edit_keep, True),
                words_update(pick_keep),
                words_update(eval_keep),  # any word: a dropped-in one is evaluated on photos given here
                rows,
            )

        word_outputs = [gen_words, edit_words, word_pick, eval_word, words_table]
        word_inputs = [gen_words, edit_words, word_pick, eval_word]
        for trigger in (
            gen_tab.select,
            edit_tab.select,
            words_tab.select,
            eval_tab.select,
            gen_refresh.click,
            words_refresh.click,
        ):
            trigger(refresh_words, word_inputs, word_outputs, show_progress="hidden")

        # ---------------------------------------------------------------------------- learn
        def start_learning(
            files,
            folder_text,
            token_text,
            init_text,
            prop_v,
            steps_v,
            early_v,
            preview_v,
            prompt_v,
            save_v,
            lr_v,
            batch_v,
            vectors_v,
            seed_v,
        ):
            try:
                from ..concept import check_token_name

                tok = check_token_name((token_text or "").strip(), "new word")
                name, run = jobs.new_folder(tok)
                try:
                    photos_dir = _take_photos(files, folder_text, run)
                except BaseException:
                    import shutil

                    shutil.rmtree(run, ignore_errors=True)
                    raise
                argv = ["learn", str(photos_dir), "--token", tok, "--out", str(run), "--property", prop_v]
                if (init_text or "").strip():
                    argv += ["--init", init_text.strip()]
                # an empty number field reads 0: "the default" where 0 cannot run (steps, lr, batch, vectors)
                for flag, v, kind, zero_ok in (
                    ("--steps", steps_v, int, False),
                    ("--preview-every", preview_v, int, True),
                    ("--save-every", save_v, int, False),
                    ("--lr", lr_v, float, False),
                    ("--batch-size", batch_v, int, False),
                    ("--vectors", vectors_v, int, False),
                    ("--seed", seed_v, int, True),
                ):
                    v = _num(v)
                    if v is not None and (v or zero_ok):
                        argv += [flag, str(kind(v))]
                if (prompt_v or "").strip():
                    argv += ["--preview-prompt", prompt_v.strip()]
                if not early_v:
                    argv.append("--no-early-stop")
                argv += jobs.model_args
                j = jobs.submit(name, run, tok, argv)
                pos = jobs.queue_position(j)
                cap = f", at most {argv[argv.index('--steps') + 1]} steps" if "--steps" in argv else ""
                msg = (
                    f"{html.escape(tok)}: {'learning' if pos <= 1 and j.state != 'queued' else 'queued'} "
                    f"in `{name}`{cap}"
                )
                return msg, gr.update(choices=jobs.names(), value=name)
            except Exception as e:
                return _say(e), gr.skip()

        def _take_photos(files, folder_text, run: Path) -> Path:
            """Uploaded photos (safe loader, re-encoded as PNG under names of ours), or a folder inside the
            photos root (checked as `oneword learn` checks it)."""
            from ..data import read_photos
            from ..safeio import atomic_save_image

            if files:
                images = security.read_photos(files)
                for i, im in enumerate(images):
                    atomic_save_image(run / "photos" / f"{i:02d}.png", im)
                return run / "photos"
            if (folder_text or "").strip():
                path = security.inside(ws.photos_root, folder_text)
                read_photos(path)
                return path
            raise OnewordError("drop 3-5 photos of the concept (or name a folder)")

        start.click(
            start_learning,
            [
                photos,
                folder,
                token,
                init,
                prop,
                steps,
                early,
                preview_every,
                preview_prompt,
                save_every,
                lr,
                batch,
                vectors,
                seed,
            ],
            [learn_msg, job],
        )

        def suggest_init(files, folder_text, prop_v):
            try:
                from ..data import read_photos

                if files:
                    images = security.read_photos(files)
                elif (folder_text or "").strip():
                    images = read_photos(security.inside(ws.photos_root, folder_text))
                else:
                    raise OnewordError("drop the photos first")
                from ..init_words import describe_choice

                choice = ws.suggest_init(images, prop_v)
                ranked = ", ".join(f"{w} ({s:+.3f})" for w, s in choice["top"])
                return html.escape(f"{describe_choice(choice)}. Next: {ranked}"), choice["words"][0]
            except Exception as e:
                return _say(e), gr.skip()

        suggest.click(suggest_init, [photos, folder, prop], [suggestions, init])

        def stop_job(name):
            try:
                return html.escape(jobs.stop(name)) if name else "choose a job"
            except Exception as e:
                return _say(e)

        def resume_job(name, steps_v):
            try:
                v = _num(steps_v)
                return html.escape(jobs.resume(name, int(v) if v else None)) if name else "choose a job"
            except Exception as e:
                return _say(e)

        stop.click(stop_job, [job], [job_msg])
        resume.click(resume_job, [job, resume_steps], [job_msg])

        def tick(name, last):
            """The selected job as the server sees it; unchanged parts are not sent again."""
            last = dict(last or {})
            names = jobs.names()
            if name not in names:
                cur = jobs.current()
                name = cur.name if cur else None
            j = jobs.get(name)
            out_job = gr.update(choices=names, value=name) if (names, name) != last.get("job") else gr.skip()
            last["job"] = (names, name)
            q = _queue_table(jobs)
            out_queue = q if q != last.get("queue") else gr.skip()
            last["queue"] = q
            if j is None:
                return (
                    out_job,
                    "<p>No job yet: drop photos, name the word, Start.</p>",
                    gr.skip(),
                    gr.skip(),
                    gr.update(visible=False),
                    out_queue,
                    last,
                )
            p = jobs.progress(j)
            html_status = _status_html(j, p, jobs)
            curve_key = (name, len(p.losses), len(p.val_losses))
            if curve_key != last.get("curve"):
                import pandas as pd

                rows = [(s, v, "loss (check points)") for s, v in p.losses]
                rows += [(s, v, "validation loss") for s, v in p.val_losses]
                out_plot = pd.DataFrame(rows, columns=["step", "loss", "curve"]).astype(
                    {"step": "int64", "loss": "float64", "curve": "str"}
                )  # typed even when empty
                last["curve"] = curve_key
            else:
                out_plot = gr.skip()
            previews = j.previews()
            prev = str(previews[-1]) if previews else None
            out_prev = _preview(prev) if (name, prev) != last.get("preview") else gr.skip()
            last["preview"] = (name, prev)
            word = j.word if j.state in FINISHED + ("interrupted",) else None
            wkey = (name, str(word), word.stat().st_mtime if word else None)
            if wkey != last.get("word"):
                out_dl = (
                    gr.update(value=str(_export_copy(ws, j.name, word)), visible=True)
                    if word
                    else gr.update(visible=False)
                )
                last["word"] = wkey
            else:
                out_dl = gr.skip()
            return out_job, html_status, out_plot, out_prev, out_dl, out_queue, last

        tick_outputs = [job, status, plot, preview, download, queue, seen]
        timer.tick(tick, [job, seen], tick_outputs, show_progress="hidden", queue=False)
        app.load(tick, [job, seen], tick_outputs, show_progress="hidden")
        app.load(refresh_words, word_inputs, word_outputs, show_progress="hidden")

        def pick_job(name, last):
            last = dict(last or {})
            last.pop("curve", None), last.pop("preview", None), last.pop("word", None)
            return last

        job.input(pick_job, [job, seen], [seen], queue=False)

        # ---------------------------------------------------------------------------- generate
        def do_generate(ids, prompt, n, seed_v, steps_v, caption):
            try:
                r = ws.generate(ids, prompt, int(n), int(_num(seed_v, 0)), _num(steps_v), caption=caption)
                ims = [(upscaled(im), f"seed {s}") for im, s in zip(r["images"], r["seeds"])]
                base = [(upscaled(im), f"seed {s}") for im, s in zip(r["baseline"], r["seeds"])]
                msg = (
                    f"{len(ims)} images of “{html.escape(r['prompt'])}” (seeds {r['seeds'][0]}-{r['seeds'][-1]}); "
                    f"baseline: “{html.escape(r['baseline_prompt'])}”"
                )
                return ims, base, msg
            except Exception as e:
                return gr.skip(), gr.skip(), _say(e)

        def do_variations(ids, n, seed_v):
            try:
                if not ids:
                    raise OnewordError("choose a word")
                r = ws.variations(ids[0], int(n), int(_num(seed_v, 0)))
                ims = [(upscaled(im), f"seed {s}") for im, s in zip(r["images"], r["seeds"])]
                base = [(upscaled(im), f"seed {s}") for im, s in zip(r["baseline"], r["seeds"])]
                return (
                    ims,
                    base,
                    (f"variations: “{html.escape(r['prompt'])}”; baseline: “{html.escape(r['baseline_prompt'])}”"),
                    r["prompt"],
                )
            except Exception as e:
                return gr.skip(), gr.skip(), _say(e), gr.skip()

        gen_go.click(
            do_generate,
            [gen_words, gen_prompt, gen_n, gen_seed, gen_steps, gen_caption],
            [gen_images, gen_base, gen_msg],
        )
        gen_var.click(do_variations, [gen_words, gen_n, gen_seed], [gen_images, gen_base, gen_msg, gen_prompt])

        # ---------------------------------------------------------------------------- edit
        def load_edit_photo(file):
            try:
                if file is None:
                    return None, None, ""
                im = security.read_photos([file])[0]
                big = upscaled(im, 384)
                return (
                    im,
                    {"background": big, "layers": [], "composite": big},
                    (f"{security.upload_name(file)}: {im.width}x{im.height}; paint the region to change"),
                )
            except Exception as e:
                return None, None, _say(e)

        edit_file.change(load_edit_photo, [edit_file], [edit_photo, editor, edit_msg])

        def do_edit(photo, painted, box, ids, prompt, seed_v, strength):
            try:
                if photo is None:
                    raise OnewordError("drop a photo to edit first")
                if (box or "").strip():
                    from ..editing import parse_box

                    mask = parse_box(box)
                else:
                    mask = _painted_mask(painted)
                r = ws.edit(photo, mask, prompt, ids, int(_num(seed_v, 0)), float(strength))
                from PIL import Image

                mask_im = Image.fromarray((r["mask"] * 255).astype("uint8"))
                return (
                    upscaled(mask_im),
                    upscaled(r["image"]),
                    f"edited {100 * r['fraction']:.0f}% of the photo; the rest is the photo's own pixels",
                )
            except Exception as e:
                return gr.skip(), gr.skip(), _say(e)

        edit_go.click(
            do_edit,
            [edit_photo, editor, edit_box, edit_words, edit_prompt, edit_seed, edit_strength],
            [edit_mask, edit_out, edit_msg],
        )

        # ---------------------------------------------------------------------------- words
        def do_upload(file, gen_keep, edit_keep, pick_keep, eval_keep):
            """Read a dropped word file; the drop area is emptied again for the next one."""
            try:
                if file is None:
                    return (gr.skip(),) * 6 + ("",)
                msg = ws.add_word_file(file)
                return (*refresh_words(gen_keep, edit_keep, pick_keep, eval_keep), None, html.escape(msg))
            except Exception as e:
                return (gr.skip(),) * 5 + (None, _say(e))

        upload.upload(do_upload, [upload, *word_inputs], [*word_outputs, upload, words_msg])

        def do_inspect(word_id):
            try:
                return ws.inspect(word_id), ""
            except Exception as e:
                return gr.skip(), _say(e)

        inspect_go.click(do_inspect, [word_pick], [inspect_out, words_msg])

        def do_convert(word_id, tool_v):
            try:
                path, msg = ws.export(word_id, tool_v)
                return gr.update(value=str(path), visible=True, label=f"Download {path.name}"), html.escape(msg)
            except Exception as e:
                return gr.update(visible=False), _say(e)

        convert_go.click(do_convert, [word_pick, tool], [word_file, words_msg])

        def do_delete(word_id, sure_v, gen_keep, edit_keep, pick_keep, eval_keep):
            try:
                if not sure_v:
                    raise OnewordError("tick 'Yes, delete it' first")
                msg = ws.delete(word_id, jobs)
                return (*refresh_words(gen_keep, edit_keep, None, eval_keep), html.escape(msg), False)
            except Exception as e:
                return (gr.skip(),) * 5 + (_say(e), gr.skip())

        delete_go.click(do_delete, [word_pick, sure, *word_inputs], [*word_outputs, words_msg, sure])

        # ---------------------------------------------------------------------------- evaluate
        def do_evaluate(word_id, caption, n, steps_v, files, folder_text):
            try:
                started = time.perf_counter()
                photos = None
                if files:  # through the same safe loader as every upload
                    photos = security.read_photos(files)
                elif (folder_text or "").strip():
                    from ..data import read_photos

                    photos = read_photos(security.inside(ws.photos_root, folder_text))
                report = ws.evaluate(word_id, photos=photos, caption=caption, n=int(n), steps=_num(steps_v))
                from ..evaluation import sample_grid
                from ..sampling import make_grid

                grids = [sample_grid(r, cols=min(8, int(n))) for r in report["results"]]
                grid = make_grid(grids, cols=1, pad=6)
                return (
                    report_table(report),
                    scatter_plot(report),
                    upscaled(grid, 384),
                    f"evaluated in {time.perf_counter() - started:.0f} s",
                )
            except Exception as e:
                return gr.skip(), gr.skip(), gr.skip(), _say(e)

        eval_go.click(
            do_evaluate,
            [eval_word, eval_caption, eval_n, eval_steps, eval_photos, eval_folder],
            [eval_table, eval_plot, eval_grid, eval_msg],
        )
    return app


# ------------------------------------------------------------------------------------------------- pieces
def _painted_mask(value):
    """The painted pixels of the editor (any layer's paint, or where the composite differs from the photo)."""
    import numpy as np

    if not value:
        raise OnewordError("paint the region to change (or give a box)")
    mask = None
    for layer in value.get("layers") or []:
        if layer is None:
            continue
        a = np.asarray(layer)
        m = a[..., 3] > 0 if a.ndim == 3 and a.shape[-1] == 4 else a.max(axis=-1) > 0 if a.ndim == 3 else a > 0
        mask = m if mask is None else mask | m
    bg, comp = value.get("background"), value.get("composite")
    if (mask is None or not mask.any()) and bg is not None and comp is not None:
        b, c = np.asarray(bg)[..., :3].astype(int), np.asarray(comp)[..., :3].astype(int)
        if b.shape == c.shape:
            mask = np.abs(b - c).max(-1) > 8
    if mask is None or not mask.any():
        raise OnewordError("nothing painted: paint the region to change (or give a box)")
    return mask


def _preview(path):
    """The preview grid `learn` wrote (a file of ours), enlarged for small models, with its step as the label."""
    if path is None:
        return None
    from PIL import Image

    with Image.open(path) as im:
        big = upscaled(im.convert("RGB"), 256)
    step = Path(path).stem.replace("step_", "").lstrip("0") or "0"
    return gr.update(value=big, label=f"Latest preview: step {step}")


def _export_copy(ws: Workspace, name: str, word: Path) -> Path:
    """The run's word under its run's name, for the Download button."""
    import shutil

    dest = ws.root / ".exports" / "learned" / f"{name}.safetensors"
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(word, dest)
    return dest


def _status_html(j, p, jobs: JobManager) -> str:
    total = p.total or 1
    run = j.run_json
    batch = int((run.get("config") or {}).get("batch_size") or 0)
    bits = [
        f"<span class='ow-badge ow-{j.state}' id='learn-state'>{html.escape(j.state.replace('_', ' '))}</span> "
        f"<b>{html.escape(j.token)}</b> in <code>{html.escape(j.name)}</code>"
    ]
    bits.append(f"<progress id='learn-progress' value='{p.step}' max='{total}'></progress>")
    line = f"step <span id='learn-step'>{p.step}</span> / {total}"
    if j.state == "running" and p.rate:
        line += f" · {p.rate:.1f} steps/s"
        if batch:
            line += f" ({p.rate * batch:.0f} image-steps/s)"
        line += f" · at most {_duration((total - p.step) / p.rate)} left"
    if p.losses:
        line += f" · loss {p.losses[-1][1]:.4f}"
    if p.val_losses:
        line += f" · validation loss {p.val_losses[-1][1]:.4f}"
    bits.append(f"<div>{line}</div>")
    es = run.get("early_stopping") or {}
    if j.state == "early_stopped":
        bits.append(
            f"<div id='learn-early-stop'><b>Early stopping fired at step {run.get('step')}</b>: the validation "
            f"loss stopped falling (the slope of its last {es.get('val_window')} values is no longer "
            f"{es.get('val_z')} standard errors below zero).</div>"
        )
    elif es.get("enabled") and j.state == "running":
        bits.append(
            f"<div>Early stopping watches the validation loss every {es.get('val_every')} steps "
            f"(not before step {es.get('min_steps')}).</div>"
        )
    if j.batch:
        mates = [n for n in jobs.names() if n != j.name and (o := jobs.get(n)) and o.batch == j.batch]
        bits.append(
            f"<div id='learn-shared'>Learning together with {html.escape(', '.join(mates) or 'no other job now')} "
            f"in one <code>oneword learn-many</code> process (<code>.batches/{html.escape(j.batch)}</code>)</div>"
        )
    if p.lr is not None and j.state == "running":
        bits.append(f"<div>learning rate {p.lr:g}</div>")
    if j.state == "queued":
        bits.append(
            f"<div>Queued: number {jobs.queue_position(j)} (one learning process at a time on this device; "
            "queued jobs that can share a batch start together).</div>"
        )
    if j.message:
        bits.append(f"<div id='learn-job-message'>{html.escape(j.message)}</div>")
    if run.get("image_steps_per_s") and j.state in FINISHED:
        bits.append(f"<div>{run['image_steps_per_s']:.1f} image-steps/s over {run.get('elapsed_s', 0):.0f} s</div>")
    return "\n".join(bits)


def _duration(s: float) -> str:
    s = max(0, int(s))
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s" if s >= 60 else f"{s}s"


def _photo_inputs(ws, prefix: str, label: str):
    """Photos dropped in, or a folder under the photos root (the element ids the browser tests use)."""
    photos = gr.File(label=label, file_count="multiple", file_types=["image"], elem_id=f"{prefix}-photos")
    folder = gr.Textbox(label=f"…or a folder of photos under {ws.photos_root}", elem_id=f"{prefix}-folder")
    return photos, folder


def _queue_table(jobs: JobManager) -> str:
    rows = []
    for n in jobs.names():
        j = jobs.get(n)
        jobs.progress(j)  # every card's step, not only the one shown
        where = f"batch `{j.batch}`" if j.batch else ""
        rows.append(
            f"| `{n}` | {html.escape(j.token)} | {j.state.replace('_', ' ')} | {j.progress.step or ''} | {where} |"
        )
    if not rows:
        return ""
    return (
        "**Jobs** (one learning process at a time; queued jobs that can share a batch learn together in one "
        "learn-many process; the rest wait in order)\n\n| run | word | state | step | learns in |\n"
        "|---|---|---|---|---|\n" + "\n".join(rows)
    )
