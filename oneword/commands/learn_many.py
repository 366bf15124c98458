"""`oneword learn-many`: learn many words at once, several concepts sharing each batch (oneword.many)."""

from __future__ import annotations

from pathlib import Path

from ..errors import OnewordError
from ._common import add_command, add_model_args, load_model_from


def register(subparsers) -> None:
    p = add_command(
        subparsers,
        "learn-many",
        "learn many words at once, several concepts per batch",
        description="Learn one word per job: JOBS is a folder of photo folders (token <folder name>; an "
        "optional oneword.json or oneword.toml beside the photos sets init, property, vectors, "
        'steps, seed, lr; init may be "auto" or "encoder" as in oneword learn) or a JSONL manifest with '
        "those fields and photos, token, out. "
        "Each concept's folder under --out is what `oneword learn` writes.",
    )
    p.add_argument("jobs", nargs="?", help="folder of photo folders, or a .jsonl manifest (not needed with --resume)")
    p.add_argument("--out", help="folder for the concepts' run folders and summary.json (default: runs/)")
    add_model_args(p)
    p.add_argument(
        "--slots", type=int, help="concepts per batch (default: as many as fit in free GPU memory; on the CPU up to 8)"
    )
    p.add_argument("--steps", type=int, help="maximum steps per concept unless its job sets them (default: learn's)")
    p.add_argument("--batch-size", type=int, help="photos per concept per step (default: 4)")
    p.add_argument("--lr", type=float, help="learning rate unless the job sets it (default: learn's)")
    p.add_argument("--save-every", type=int, help="checkpoint every N steps (default: 250)")
    p.add_argument("--no-early-stop", action="store_true", help="run every concept to its step cap")
    p.add_argument(
        "--clip",
        metavar="MODEL",
        help='the CLIP judge for jobs whose init is "auto" on a real model (transformers CLIPModel folder or hub id)',
    )
    p.add_argument("--preview-every", type=int, help="write a preview grid into each concept's previews/ every N steps")
    p.add_argument("--no-cuda-graph", action="store_true", help="on a GPU, run each step eagerly")
    p.add_argument("--resume", metavar="OUT", help="continue an interrupted learn-many run in OUT")
    p.add_argument(
        "--ray",
        metavar="auto|ADDRESS",
        help="run one worker per GPU (or CPU) of a Ray cluster (needs `pip install oneword[ray]`)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args) -> None:
    from ..many import learn_many, read_jobs, resume_manifest, resume_settings, summary_table

    settings = {
        "steps": args.steps,
        "batch_size": args.batch_size,
        "lr": args.lr,
        "save_every": args.save_every,
        "preview_every": args.preview_every,
        "init_clip": args.clip,
    }
    if args.no_early_stop:
        settings["early_stop"] = False
    if args.no_cuda_graph:
        settings["cuda_graph"] = False
    settings = {k: v for k, v in settings.items() if v is not None}
    slots = args.slots
    if slots is not None and slots < 1:
        raise OnewordError(f"--slots must be at least 1, not {slots}")
    if args.resume:
        out = Path(args.resume)
        jobs, saved, saved_slots = resume_settings(out)
        settings = {**saved, **{k: v for k, v in settings.items() if k in ("steps", "cuda_graph")}}
        slots = slots or saved_slots
        model = resume_manifest(out).get("model") or {}
        if args.model is None and model.get("kind", "world") != "world":
            args.model = model["source"]  # the model it was learned on, as `learn --resume` does
    else:
        if not args.jobs:
            raise OnewordError(
                "learn-many needs JOBS (a folder of photo folders or a .jsonl manifest), or --resume OUT"
            )
        out = Path(args.out or "runs")
        jobs = read_jobs(args.jobs, out)  # refuses duplicate tokens / out folders before any work
    if args.ray:
        from ..distributed import learn_many_ray

        rows = learn_many_ray(
            args.ray, args.model, args.device, jobs, out, slots=slots, resume=bool(args.resume), **settings
        )
    else:
        model = load_model_from(args)
        rows = learn_many(model, jobs, out, slots=slots, resume=bool(args.resume), progress=not args.quiet, **settings)
    print(summary_table(rows))
    print(f"summary: {out / 'summary.json'}")
    failed = [r for r in rows if r["status"] == "failed"]
    if failed:
        raise OnewordError(f"{len(failed)} of {len(rows)} concepts failed (reasons above and in their run.json)")
