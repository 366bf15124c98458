"""What learning through `oneword ui` costs over `oneword learn`: image-steps/s of the same job both ways.

In one process, on the embedded world model, for each of --pairs pairs (CLI then UI, the next pair UI then CLI,
so that a slow drift of the machine's load falls on both sides alike):

  cli   `python -m oneword learn PHOTOS ...` as a subprocess, its output to a log file, with the settings the
        page's Start button passes (the same argv the UI job writes to its ui-job.json: checked after each UI run);
  ui    the same job through the real web app: `oneword.ui.serve` (Gradio on 127.0.0.1, the server in this
        process), the Start button's own handler called over HTTP by gradio_client with the five photos
        uploaded as the page uploads them, then the page's timer handler (`tick`, the Learn tab's progress bar,
        curves and preview) called once a second until the job has finished, as an open page does. The job is
        the page's: `python -m oneword.ui.worker` running `oneword learn` with its progress log.

The photos: oneword.world.concepts.concept("teal_ring").photos(5), rendered once, saved as PNGs. Settings: the
page's defaults for the world model (checkpoint every 25 steps, a preview grid every 50 steps, learning rate,
vectors, seed) except --steps S, batch size 4 and early stopping off (unchecked). Each run's figure is the
`image_steps_per_s` that `learn` writes to run.json: the learning loop's own rate, check points, checkpoints and
previews included, model loading excluded (the wall seconds, loading included, are shown beside it).

The web server stays up for the whole benchmark, idle during the CLI runs (no page is open then).

    HF_HUB_OFFLINE=1 .venv/bin/python -m benchmarks.ui_overhead --pairs 6 --steps 300    # docs/ui.md, Overhead
    HF_HUB_OFFLINE=1 .venv/bin/python -m benchmarks.ui_overhead --pairs 1 --steps 20     # a smoke run (~2 min)
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.common import log, write_json

CONCEPT = "teal_ring"
TOKEN = "<teal-ring>"
TICK_S = 1.0  # the page's timer (oneword.ui.app.TICK_S)
PHOTOS = 5
FINISHED = ("done", "early_stopped")
JOB_TIMEOUT_S = 3600  # one run may not take longer than this, however loaded the machine


def render_photos(folder: Path) -> list[Path]:
    """The concept's photos as PNG files (what both sides learn from)."""
    from oneword.safeio import atomic_save_image
    from oneword.world.concepts import concept

    return [atomic_save_image(folder / f"{i:02d}.png", im) for i, im in enumerate(concept(CONCEPT).photos(PHOTOS))]


def page_settings(model, steps: int, preview_every: int | None) -> dict:
    """What the Start button is given: the page's defaults for the world model (LearnConfig.with_defaults, as
    oneword.ui.app fills its fields), with the benchmark's changes."""
    from oneword import LearnConfig
    from oneword.world.concepts import concept

    d = LearnConfig.with_defaults(model)
    c = concept(CONCEPT)
    return {
        "init": c.init_word,
        "property": "object",
        "steps": steps,
        "early": False,  # unchecked: every run is exactly `steps` steps
        "preview_every": 50 if preview_every is None else preview_every,  # the page's default for the world
        "save_every": 25,  # the page's default
        "batch_size": 4,
        "lr": d.lr,
        "vectors": d.vectors,
        "seed": d.seed,
    }


def cli_argv(photos: Path, out: Path, s: dict) -> list[str]:
    """`oneword learn` with the flags the page's Start button writes (oneword.ui.app.start_learning)."""
    argv = ["learn", str(photos), "--token", TOKEN, "--out", str(out), "--property", s["property"]]
    argv += ["--init", s["init"], "--steps", str(s["steps"]), "--preview-every", str(s["preview_every"])]
    argv += ["--save-every", str(s["save_every"]), "--lr", str(float(s["lr"])), "--batch-size", str(s["batch_size"])]
    argv += ["--vectors", str(s["vectors"]), "--seed", str(s["seed"])]
    return argv + ([] if s["early"] else ["--no-early-stop"])


def _flags(argv: list[str]) -> list[str]:
    """An argv without what differs between the two sides by design: the photo folder and the run folder."""
    out, skip = [], False
    for i, a in enumerate(argv):
        if skip or i == 1:
            skip = False
            continue
        if a == "--out":
            skip = True
            continue
        out.append(a)
    return out


class LoadWatch:
    """The 1-minute load average, read at most once a second while a run learns."""

    def __init__(self):
        self.samples: list[float] = []
        self._last = 0.0

    def sample(self) -> None:
        if time.monotonic() - self._last >= 1.0:
            self.samples.append(os.getloadavg()[0])
            self._last = time.monotonic()

    def mean(self) -> float:
        return statistics.fmean(self.samples) if self.samples else os.getloadavg()[0]


class CpuWatch:
    """CPU seconds over one run, from this process's own counters: the learning process (a waited-for child,
    `learn` or the UI's worker; model loading included) and this process (the web server, its job watcher and
    the page's requests during a UI run; the idle server and the benchmark's own waiting during a CLI run)."""

    def __init__(self):
        self.child0, self.self0 = self._read(resource.RUSAGE_CHILDREN), self._read(resource.RUSAGE_SELF)

    @staticmethod
    def _read(who) -> float:
        r = resource.getrusage(who)
        return r.ru_utime + r.ru_stime

    def result(self) -> dict:
        return {
            "learn_cpu_s": round(self._read(resource.RUSAGE_CHILDREN) - self.child0, 2),
            "server_cpu_s": round(self._read(resource.RUSAGE_SELF) - self.self0, 2),
        }


def run_result(folder: Path, wall: float, load: LoadWatch, cpu: CpuWatch) -> dict:
    run = json.loads((folder / "run.json").read_text())
    if run.get("status") not in FINISHED or not run.get("image_steps_per_s"):
        raise RuntimeError(f"{folder}: the run did not finish ({run.get('status')}); see its log")
    return {
        "image_steps_per_s": float(run["image_steps_per_s"]),
        "loop_s": float(run["elapsed_s"]),
        "wall_s": round(wall, 1),
        "steps": int(run["step"]),
        "load": round(load.mean(), 2),
        **cpu.result(),
        "folder": str(folder),
    }


def run_cli(photos: Path, out: Path, s: dict) -> dict:
    """`python -m oneword learn ...` in its own process, its output to a log (as the UI's worker logs)."""
    out.mkdir(parents=True)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}  # as the UI's jobs run
    load, cpu = LoadWatch(), CpuWatch()
    t = time.monotonic()
    with open(out / "cli-log.txt", "wb") as f:
        proc = subprocess.Popen(
            [sys.executable, "-m", "oneword", *cli_argv(photos, out, s)],
            stdout=f,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
        )
        while proc.poll() is None:
            load.sample()
            if time.monotonic() - t > JOB_TIMEOUT_S:
                proc.kill()
            time.sleep(0.2)
    if proc.returncode != 0:
        raise RuntimeError(f"oneword learn exited with {proc.returncode}; see {out / 'cli-log.txt'}")
    return run_result(out, time.monotonic() - t, load, cpu)


def run_ui(server, client, photos: list[Path], s: dict, cli_reference: list[str]) -> dict:
    """Start through the page's handler (photos uploaded), then the page's 1 s timer until the job ends."""
    from gradio_client import handle_file

    load, cpu = LoadWatch(), CpuWatch()
    t = time.monotonic()
    msg, name = client.predict(
        [handle_file(str(p)) for p in photos],
        "",  # no folder: the photos are dropped in
        TOKEN,
        s["init"],
        s["property"],
        s["steps"],
        s["early"],
        s["preview_every"],
        "",  # preview prompt: the default
        s["save_every"],
        s["lr"],
        s["batch_size"],
        s["vectors"],
        s["seed"],
        api_name="/start_learning",
    )
    name = name.get("value") if isinstance(name, dict) else name  # the Job dropdown's update: the new job
    job = server.jobs.get(name)
    if job is None:
        raise RuntimeError(f"Start did not queue a job: {msg}")
    ui_argv = json.loads((job.folder / "ui-job.json").read_text())["argv"]
    if _flags(ui_argv) != _flags(cli_reference):  # the two sides must learn with the same settings
        raise RuntimeError(f"the page's job differs from the CLI's:\n  ui  {ui_argv}\n  cli {cli_reference}")
    next_tick, ticks = time.monotonic(), 0
    while job.state not in FINISHED:  # set when the watcher has reaped the process: its CPU time is counted
        if job.state in ("failed", "interrupted", "stopped") or time.monotonic() - t > JOB_TIMEOUT_S:
            raise RuntimeError(f"the UI job {name} ended {job.state}: {job.message}")
        client.predict(name, api_name="/tick")  # what the open page asks each second
        ticks += 1
        load.sample()
        next_tick += TICK_S
        time.sleep(max(0.0, next_tick - time.monotonic()))
    return {**run_result(job.folder, time.monotonic() - t, load, cpu), "page_ticks": ticks}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def bootstrap_median(xs: list[float], n: int = 10000, seed: int = 0) -> tuple[float, float]:
    """95% percentile interval of the median over pairs (pairs resampled with replacement)."""
    rng = random.Random(seed)
    meds = sorted(statistics.median(rng.choices(xs, k=len(xs))) for _ in range(n))
    return meds[int(0.025 * n)], meds[int(0.975 * n) - 1]


def summary(pairs: list[dict]) -> dict:
    ratios = [p["ui"]["image_steps_per_s"] / p["cli"]["image_steps_per_s"] for p in pairs]
    loads = [p[side]["load"] for p in pairs for side in ("cli", "ui")]
    return {
        "ratios": [round(r, 4) for r in ratios],
        "median": round(statistics.median(ratios), 4),
        "ci95": [round(x, 4) for x in bootstrap_median(ratios)],
        "min": round(min(ratios), 4),
        "max": round(max(ratios), 4),
        "load_mean": round(statistics.fmean(loads), 2),
        "cpu_s": {  # per run, mean over pairs
            side: {k: round(statistics.fmean(p[side][k] for p in pairs), 2) for k in ("learn_cpu_s", "server_cpu_s")}
            for side in ("cli", "ui")
        },
        "load_range": [min(loads), max(loads)],
    }


def print_table(pairs: list[dict], s: dict) -> None:
    print()
    print("| pair | order | `oneword learn` image-steps/s | `oneword ui` image-steps/s | UI / CLI | load (1 min) |")
    print("|---|---|---|---|---|---|")
    for i, p in enumerate(pairs, 1):
        c, u = p["cli"], p["ui"]
        ratio = u["image_steps_per_s"] / c["image_steps_per_s"]
        print(
            f"| {i} | {p['order']} | {c['image_steps_per_s']:.1f} ({c['wall_s']:.0f} s wall) | "
            f"{u['image_steps_per_s']:.1f} ({u['wall_s']:.0f} s wall) | {ratio:.3f} | {c['load']:.1f} / {u['load']:.1f} |"
        )
    sm = summary(pairs)
    print()
    print(
        f"UI / CLI image-steps/s over {len(pairs)} pairs: median {sm['median']:.3f} "
        f"(95% bootstrap interval of the median [{sm['ci95'][0]:.3f}, {sm['ci95'][1]:.3f}], "
        f"min {sm['min']:.3f}, max {sm['max']:.3f})"
    )
    print(
        f"load average (1 min) while learning: mean {sm['load_mean']:.1f}, "
        f"{sm['load_range'][0]:.1f}-{sm['load_range'][1]:.1f}, on {os.cpu_count()} CPUs"
    )
    c = sm["cpu_s"]
    print(
        f"CPU seconds per run (mean over pairs): the learning process {c['cli']['learn_cpu_s']:.1f} (CLI) / "
        f"{c['ui']['learn_cpu_s']:.1f} (UI's worker); the web server and the page's requests "
        f"{c['ui']['server_cpu_s']:.2f} during a UI run ({c['cli']['server_cpu_s']:.2f} idle, during a CLI run)"
    )
    print(
        f"settings: {s['steps']} steps, batch {s['batch_size']}, early stopping off, checkpoint every "
        f"{s['save_every']} steps, previews every {s['preview_every'] or 'never'}"
    )


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--pairs", type=int, default=4, help="CLI/UI pairs, alternating which goes first (default 4)")
    ap.add_argument("--steps", type=int, default=300, help="learning steps of every run (default 300)")
    ap.add_argument(
        "--preview-every", type=int, default=None, help="preview grid every N steps (default: the page's, 50)"
    )
    ap.add_argument("--work", type=Path, default=None, help="folder for the runs (default: a temporary one)")
    ap.add_argument("--json", type=Path, default=None, help="write every run's figures here")
    a = ap.parse_args(argv)
    if a.pairs < 1 or a.steps < 1 or (a.preview_every is not None and a.preview_every < 0):
        print("error: --pairs and --steps must be at least 1, --preview-every at least 0", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="oneword-ui-overhead-") as tmp:
        return bench(Path(a.work or tmp).resolve(), a)


def bench(work: Path, a) -> int:
    from gradio_client import Client

    from oneword.ui import serve

    work.mkdir(parents=True, exist_ok=True)
    photos_dir = work / "photos"
    photos = render_photos(photos_dir)
    log(f"load average {os.getloadavg()[0]:.1f} at the start; starting the web app")
    server = serve(work / "ui", port=_free_port(), block=False, quiet=True, photos_root=work)
    pairs = []
    try:
        s = page_settings(server.workspace.model(), a.steps, a.preview_every)
        reference = cli_argv(photos_dir, work / "cli", s)
        # one TLS context for all calls, as a browser keeps its connection: gradio_client otherwise builds one per
        # request and per event stream (~0.08 CPU-s a tick here, 5x what the server's handler costs)
        client = Client(
            server.url,
            verbose=False,
            download_files=str(work / "page-downloads"),
            ssl_verify=ssl.create_default_context(),
        )
        for i in range(a.pairs):
            order = ("cli", "ui") if i % 2 == 0 else ("ui", "cli")
            pair = {"order": " then ".join(x.upper() for x in order)}
            for side in order:
                if side == "cli":
                    pair["cli"] = run_cli(photos_dir, work / "cli" / f"pair-{i + 1}", s)
                else:
                    pair["ui"] = run_ui(server, client, photos, s, reference)
                r = pair[side]
                log(
                    f"pair {i + 1} {side}: {r['image_steps_per_s']:.1f} image-steps/s "
                    f"({r['loop_s']:.0f} s learning, {r['wall_s']:.0f} s wall, load {r['load']:.1f}, CPU-s: "
                    f"{r['learn_cpu_s']:.1f} learning process, {r['server_cpu_s']:.2f} this process"
                    + (f", {r['page_ticks']} page ticks)" if "page_ticks" in r else ")")
                )
            pairs.append(pair)
    finally:
        server.close()
    print_table(pairs, s)
    if a.json:
        write_json(a.json, {"settings": s, "cpus": os.cpu_count(), "pairs": pairs, "summary": summary(pairs)})
    return 0


if __name__ == "__main__":
    sys.exit(main())
