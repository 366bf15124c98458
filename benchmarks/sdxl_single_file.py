"""SDXL base at full size from one single-file checkpoint, as a user downloads it, on this machine (CPU).

Writes a random SDXL base checkpoint (SDXL base's exact architecture, fp16, the original single-file key layout
that Civitai and the web UIs use; ~6.9 GB; `oneword.tiny_models.random_checkpoint_tensors("sdxl", "full")` with
its weights scaled as a network's initialisation is: N(0, 1) / sqrt(fan-in) for matrices and convolutions, 0.02 for
embeddings, 1 for norm scales. The unscaled N(0, 1) weights of `write_random_checkpoint` overflow at SDXL's full
depth: the UNet's output is NaN and every learning step is skipped as non-finite) into --work, or reuses the one
there, then runs the user's commands on it as subprocesses, offline
(HF_HUB_OFFLINE=1) and with no --model-config, so the family comes from the file's keys and the pipeline from
the configs oneword ships:

  load       oneword.models.load_model(FILE): the loader alone (what every command below starts with)
  learn      oneword learn PHOTOS --model FILE ... (a few steps); the word file must hold clip_l [n, 768] and
             clip_g [n, 1280], finite
  inspect    oneword inspect WORD --model FILE (the word's nearest words in both encoders)
  generate   oneword generate "a photo of TOKEN" --embeds WORD --model FILE (few steps, small size)
  convert    oneword convert WORD OUT --format diffusers (diffusers' two files)

For each: wall seconds, peak RSS (os.wait4's rusage of that one child: it includes the checkpoint's pages that
the loader maps from the file, which the kernel can drop), peak anonymous RSS (the process's own memory, sampled
every 0.5 s) and exit code. A watchdog kills a child whose anonymous RSS passes --limit-gib (the machine is shared), and a heavy step waits (up to --wait-min minutes) until
that much memory is available. Photos: five of the embedded world's concept `--concept`, rendered at the
training resolution. The checkpoint is deleted at the end unless --keep.

    HF_HUB_OFFLINE=1 .venv/bin/python -m benchmarks.sdxl_single_file --work /tmp/sdxl_work
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

GIB = 1024**3
CHECKPOINT = "sdxl_base_random.safetensors"
WEIGHTS = "fan-in-scaled-v1"  # the header's mark of write_checkpoint's weights (a file to reuse must have it)
WRITE = "import sys; from benchmarks.sdxl_single_file import write_checkpoint; write_checkpoint(sys.argv[1])"
LOAD = (
    "import sys, time; t = time.perf_counter(); from oneword.models import load_model; "
    "m = load_model(sys.argv[1]); print(f'load_s {time.perf_counter() - t:.1f}', m.identity['family'], "
    "m.identity['pipeline'], m.dtype, f'unet_params {sum(p.numel() for p in m.pipe.unet.parameters())}')"
)


def scaled_weight(component: str, key: str, shape: tuple):
    """random_weight scaled as an initialisation: finite activations through SDXL's full depth."""
    import math

    import torch

    from oneword.tiny_models import random_weight

    w = random_weight(component, key, shape)
    if key.endswith("position_ids"):
        return w
    if len(shape) >= 2:
        return w * (0.02 if "embedding" in key else 1 / math.sqrt(math.prod(shape[1:])))
    if "norm" in key and key.endswith("weight"):
        return torch.ones(shape, dtype=w.dtype)
    return w * 0.01


def write_checkpoint(dest: str) -> None:
    from safetensors.torch import save_file

    from oneword.tiny_models import random_checkpoint_tensors

    tensors, _ = random_checkpoint_tensors("sdxl", "full", weight=scaled_weight)
    save_file(tensors, dest, metadata={"format": "pt", "oneword.benchmark_weights": WEIGHTS})


def available_bytes() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) * 1024
    return 0


def anon_bytes(pid: int) -> int:
    """The process's anonymous resident memory (its own; RSS less the file pages it maps)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("RssAnon:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def wait_for_memory(need: int, minutes: float) -> None:
    """The machine is shared: wait until `need` bytes are available rather than push it into the OOM killer."""
    deadline = time.monotonic() + 60 * minutes
    while available_bytes() < need:
        if time.monotonic() > deadline:
            sys.exit(f"only {available_bytes() / GIB:.1f} GiB available after {minutes} min; {need / GIB:.1f} needed")
        print(f"  waiting: {available_bytes() / GIB:.1f} GiB available, {need / GIB:.1f} needed", flush=True)
        time.sleep(30)


def run(name: str, cmd: list[str], limit: int, log: Path) -> dict:
    """Run one command; its wall seconds, peak RSS (this child alone), exit code and output's last lines."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
    print(f"### {name}: {' '.join(cmd)}", flush=True)
    killed, anon = [], [0]
    with open(log, "w") as out:
        t = time.perf_counter()
        p = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env)

        def watch():  # over the limit: stop the child before the machine swaps or kills a neighbour
            while p.returncode is None:
                anon[0] = max(anon[0], anon_bytes(p.pid))
                if anon[0] > limit:
                    killed.append(anon[0])
                    os.kill(p.pid, signal.SIGKILL)
                    return
                time.sleep(0.5)

        threading.Thread(target=watch, daemon=True).start()
        _, status, usage = os.wait4(p.pid, 0)
        p.returncode = os.waitstatus_to_exitcode(status)
        wall = time.perf_counter() - t
    text = log.read_text(errors="replace").strip().splitlines()
    row = {
        "step": name,
        "command": " ".join(cmd),
        "exit": p.returncode,
        "wall_s": round(wall, 1),
        "peak_rss_gib": round(usage.ru_maxrss * 1024 / GIB, 2),
        "peak_anon_gib": round(anon[0] / GIB, 2),
        "user_s": round(usage.ru_utime, 1),
        "tail": text[-6:],
    }
    if killed:
        row["killed"] = f"anonymous RSS {killed[0] / GIB:.1f} GiB over the {limit / GIB:.1f} GiB limit"
    print(
        f"    exit {row['exit']}, {row['wall_s']} s, peak RSS {row['peak_rss_gib']} GiB "
        f"(anonymous {row['peak_anon_gib']})",
        flush=True,
    )
    for line in row["tail"]:
        print("    | " + line[:200], flush=True)
    return row


def checkpoint_ok(path: Path) -> bool:
    """A complete SDXL base file of the full architecture (its header, not its weights)."""
    from oneword.errors import OnewordError
    from oneword.single_file import UNET, detect_family, read_checkpoint

    if not path.is_file():
        return False
    try:
        ck = read_checkpoint(path)
        full = ck.shapes[UNET + "input_blocks.0.0.weight"][0] == 320
        return detect_family(ck) == "sdxl" and full and ck.metadata.get("oneword.benchmark_weights") == WEIGHTS
    except OnewordError:
        return False


def photos(folder: Path, concept: str, size: int) -> Path:
    from oneword.world.concepts import NOVEL_CONCEPTS

    folder.mkdir(parents=True, exist_ok=True)
    for i, im in enumerate(NOVEL_CONCEPTS[concept].photos(5, seed=0, size=size)):
        im.save(folder / f"{i}.png")
    return folder


def check_word(path: Path, vectors: int) -> str:
    """'' when the word file is SDXL's pair (clip_l [n, 768], clip_g [n, 1280], finite), else what is wrong."""
    import torch
    from safetensors.torch import load_file

    if not path.is_file():
        return f"no word file {path}"
    sd = load_file(str(path))
    want = {"clip_l": (vectors, 768), "clip_g": (vectors, 1280)}
    got = {k: tuple(v.shape) for k, v in sd.items()}
    if got != want:
        return f"word file holds {got}, expected {want}"
    if not all(torch.isfinite(v).all() for v in sd.values()):
        return "word file has non-finite values"
    return ""


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--work", required=True, type=Path, help="folder for the checkpoint, photos and runs")
    ap.add_argument("--resolution", type=int, default=512, help="learn's --resolution (SDXL's own: 1024)")
    ap.add_argument("--batch-size", type=int, default=1)
    ap.add_argument("--steps", type=int, default=3, help="learn's steps")
    ap.add_argument("--gen-size", type=int, default=512, help="generate's --height and --width")
    ap.add_argument("--gen-steps", type=int, default=2)
    ap.add_argument("--concept", default="teal_ring", help="the embedded world's concept whose photos are learned")
    ap.add_argument("--grad-checkpointing", action="store_true", help="pass --grad-checkpointing to learn")
    ap.add_argument("--steps-only", nargs="*", default=None, help="run only these steps (load learn inspect ...)")
    ap.add_argument("--limit-gib", type=float, default=19.0, help="kill a command whose RSS passes this")
    ap.add_argument("--wait-min", type=float, default=15.0, help="how long to wait for free memory")
    ap.add_argument("--keep", action="store_true", help="keep the checkpoint afterwards")
    ap.add_argument("--json", type=Path, help="write the rows here (default: WORK/sdxl_single_file.json)")
    a = ap.parse_args(argv)

    work = a.work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    py, limit = sys.executable, int(a.limit_gib * GIB)
    oneword = [py, "-m", "oneword"]
    ckpt, word = work / CHECKPOINT, work / "run" / "learned_embeds.safetensors"
    token = "<sdxl-word>"
    rows = []
    wanted = set(a.steps_only or ["load", "learn", "inspect", "generate", "convert"])

    if checkpoint_ok(ckpt):
        print(f"reusing {ckpt} ({ckpt.stat().st_size / 1e9:.2f} GB)")
    else:
        wait_for_memory(9 * GIB, a.wait_min)
        partial = work / (".partial-" + CHECKPOINT)
        rows.append(run("write", [py, "-c", WRITE, str(partial)], limit, work / "write.log"))
        if rows[-1]["exit"] != 0:
            return report(rows, a, work)
        os.replace(partial, ckpt)
    size_gb = ckpt.stat().st_size / 1e9
    pics = photos(work / "photos", a.concept, a.resolution)

    heavy = int(min(a.limit_gib, 18) * GIB)
    if "load" in wanted:
        wait_for_memory(heavy, a.wait_min)
        rows.append(run("load", [py, "-c", LOAD, str(ckpt)], limit, work / "load.log"))
    if "learn" in wanted:
        wait_for_memory(heavy, a.wait_min)
        learn = [*oneword, "learn", str(pics), "--model", str(ckpt), "--token", token, "--init", "ring"]
        learn += ["--out", str(work / "run"), "--steps", str(a.steps), "--batch-size", str(a.batch_size)]
        learn += ["--resolution", str(a.resolution), "--no-early-stop"]
        learn += ["--grad-checkpointing"] if a.grad_checkpointing else []
        if (work / "run").exists():
            import shutil

            shutil.rmtree(work / "run")
        rows.append(run("learn", learn, limit, work / "learn.log"))
        problem = check_word(word, 1)
        if (work / "run" / "run.json").is_file():
            done = json.loads((work / "run" / "run.json").read_text())
            rows[-1]["loop_s"] = done.get("elapsed_s")
            rows[-1]["s_per_step"] = round(done["elapsed_s"] / max(1, done["step"]), 1)
            rows[-1]["skipped_nonfinite_steps"] = done.get("skipped_nonfinite_steps")
            if done.get("skipped_nonfinite_steps"):
                problem = problem or f"{done['skipped_nonfinite_steps']} steps skipped as non-finite"
        rows[-1]["word"] = problem or "clip_l [1, 768] + clip_g [1, 1280], finite"
        if problem:
            rows[-1]["exit"] = rows[-1]["exit"] or "bad word"
    if "inspect" in wanted and word.is_file():
        wait_for_memory(heavy, a.wait_min)
        rows.append(run("inspect", [*oneword, "inspect", str(word), "--model", str(ckpt)], limit, work / "inspect.log"))
    if "generate" in wanted and word.is_file():
        wait_for_memory(heavy, a.wait_min)
        gen = [*oneword, "generate", f"a photo of {token}", "--embeds", str(word), "--model", str(ckpt)]
        gen += ["--steps", str(a.gen_steps), "--height", str(a.gen_size), "--width", str(a.gen_size), "-n", "1"]
        (work / "gen").mkdir(exist_ok=True)
        gen += ["--out", str(work / "gen" / "grid.png"), "--overwrite"]
        rows.append(run("generate", gen, limit, work / "generate.log"))
        rows[-1]["images"] = [p.name for p in sorted((work / "gen").glob("*.png"))]
    if "convert" in wanted and word.is_file():
        out = work / "diffusers" / "learned_embeds.safetensors"
        out.parent.mkdir(exist_ok=True)
        conv = [*oneword, "convert", str(word), str(out), "--format", "diffusers", "--overwrite"]
        rows.append(run("convert", conv, limit, work / "convert.log"))
        rows[-1]["files"] = sorted(p.name for p in out.parent.iterdir())
    report(rows, a, work, size_gb)
    if not a.keep:
        ckpt.unlink()
        print(f"deleted {ckpt}")
    return 0 if all(r["exit"] == 0 for r in rows) else 1


def report(rows: list[dict], a, work: Path, size_gb: float | None = None) -> int:
    print("\n| step | exit | wall s | peak RSS GiB | peak anonymous GiB | notes |\n|---|---|---|---|---|---|")
    for r in rows:
        notes = r.get("word") or r.get("killed") or ", ".join(r.get("images", r.get("files", [])))
        if r["step"] == "load":
            notes = " ".join(r["tail"][-1:])
        if r["step"] == "learn" and "s_per_step" in r:
            notes += f"; loop {r['loop_s']} s, {r['s_per_step']} s/step"
        print(f"| {r['step']} | {r['exit']} | {r['wall_s']} | {r['peak_rss_gib']} | {r['peak_anon_gib']} | {notes} |")
    out = a.json or work / "sdxl_single_file.json"
    settings = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(a).items()}
    machine = {"cpus": os.cpu_count(), "processor": platform.processor() or platform.machine()}
    out.write_text(
        json.dumps(
            {
                "date": datetime.date.today().isoformat(),
                "checkpoint_gb": size_gb,
                "settings": settings,
                "machine": machine,
                "rows": rows,
            },
            indent=1,
        )
    )
    print(f"rows: {out}")
    return 1


if __name__ == "__main__":
    sys.exit(main())
