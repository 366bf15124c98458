"""Mutation testing: break one behaviour of the core on purpose, run the tests that guard it, expect a failure.

Each mutation below is a named, exact text substitution in one file and the few tests that must catch it. The
script copies the repository (the working tree as it is, or a commit with --ref) into a temporary folder,
runs every selected test once unmutated (they must pass), then, one mutation at a time, applies it to the
copy, runs its tests and restores the file. The working tree is never touched.

    .venv/bin/python tools/mutate.py                 # every mutation; exit 1 if a core mutation survives
    .venv/bin/python tools/mutate.py --ref HEAD      # the committed code (a clean checkout), not the working tree
    .venv/bin/python tools/mutate.py --only editability-sign-flipped saved-word-rounded-to-fp16
    .venv/bin/python tools/mutate.py --list          # the mutations and their tests
    .venv/bin/python tools/mutate.py --json out.json # also write the results

A mutation is *killed* when its tests fail (pytest exit 1, or 2 when the mutant cannot even be imported) or
run past --timeout; it *survives* when they pass. A mutation whose text is not found exactly once is *stale*
(the code moved on: update the entry), and one whose tests cannot be collected is an *error*; both count as
failures of the script. Core mutations guard the behaviours the method's results depend on (resume, the
non-finite guard, roll-back, early stopping, the saved word and its formats, installing words, the metrics,
edit, checkpoint writes); a surviving core mutation exits 1. Others are reported; docs/testing.md explains
each survivor. Keep each entry's tests few: the whole list runs in minutes on two cores.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Mutation:
    name: str
    area: str
    file: str
    old: str
    new: str
    tests: tuple[str, ...]
    core: bool = True


def M(name, area, file, old, new, *tests, core=True) -> Mutation:
    return Mutation(name, area, file, old, new, tuple(tests), core)


LEARN = "tests/test_learn.py::"
MUTATIONS = [
    # ---------------------------------------------------------------- resume
    M(
        "resume-drops-early-stopping-history",
        "resume",
        "oneword/early_stopping.py",
        'self.history = list(state.get("val_history", []))',
        "self.history = []",
        LEARN + "test_resume_where_early_stopping_decides_stops_at_the_same_step_with_the_same_history",
    ),
    M(
        "resume-forgets-the-generator",
        "resume",
        "oneword/run.py",
        'self.rng.set_state(tensors["rng"])',
        "pass",
        LEARN + "test_resume_equals_uninterrupted",
    ),
    M(
        "resume-forgets-adamw-moments",
        "resume",
        "oneword/run.py",
        'if "exp_avg" in tensors:',
        "if False:",
        LEARN + "test_resume_equals_uninterrupted",
    ),
    M(
        "resume-forgets-the-lr-scale",
        "resume",
        "oneword/run.py",
        'state.get("lr_scale", 1.0)',
        "1.0",
        LEARN + "test_a_run_of_bad_steps_rolls_back_to_the_checkpoint_at_half_the_lr_which_a_resume_keeps",
    ),
    M(
        "resume-onto-another-model",
        "resume",
        "oneword/run.py",
        "if learned_on not in (None, fingerprint):",
        "if False:",
        LEARN + "test_resume_onto_another_model_is_refused",
    ),
    M(
        "resume-with-other-settings",
        "resume",
        "oneword/run.py",
        "if saved.get(k) != getattr(self.cfg, k):",
        "if False:",
        LEARN + "test_resume_with_settings_the_checkpoint_depends_on_changed_is_refused",
    ),
    M(
        "resume-shares-the-checkpoints-memory",
        "resume",
        "oneword/run.py",
        "f.get_tensor(k).clone()",
        "f.get_tensor(k)",
        LEARN + "test_resumed_state_owns_its_memory",
    ),
    # ---------------------------------------------------------------- the non-finite guard
    M(
        "guard-ignores-the-gradient",
        "guard",
        "oneword/guard.py",
        "ok = self.check(loss, param.grad)",
        "ok = self.check(loss, torch.zeros(()))",
        "tests/test_guard.py",
        LEARN + "test_a_finite_loss_with_an_infinite_gradient_is_skipped_by_the_loop",
    ),
    M(
        "loop-hides-a-nonfinite-gradient-from-the-guard",
        "guard",
        "oneword/invert.py",
        "scaler.unscale_(opt)  # fp16",
        "scaler.unscale_(opt); vectors.grad is None or vectors.grad.nan_to_num_(0.0, 0.0, 0.0)  # fp16",
        LEARN + "test_a_finite_loss_with_an_infinite_gradient_is_skipped_by_the_loop",
    ),
    M(
        "guard-keeps-a-bad-step",
        "guard",
        "oneword/guard.py",
        "now.copy_(torch.where(ok, now, before))",
        "now.copy_(now)",
        "tests/test_guard.py",
    ),
    M(
        "guard-never-ends-a-run-of-bad-steps",
        "guard",
        "oneword/guard.py",
        "self.in_row.add_(1).mul_(bad)",
        "self.in_row.add_(bad)",
        "tests/test_guard.py",
    ),
    # ---------------------------------------------------------------- roll-back
    M(
        "rollback-gives-up-at-the-first",
        "roll-back",
        "oneword/run.py",
        "if self.rollbacks > 3:",
        "if self.rollbacks > 0:",
        LEARN + "test_a_run_of_bad_steps_rolls_back_to_the_checkpoint_at_half_the_lr_which_a_resume_keeps",
        LEARN + "test_bad_steps_that_go_on_roll_back_three_times_halving_the_lr_then_stop",
    ),
    M(
        "rollback-keeps-the-learning-rate",
        "roll-back",
        "oneword/run.py",
        "self.lr_scale * 0.5)",
        "self.lr_scale)",
        LEARN + "test_a_run_of_bad_steps_rolls_back_to_the_checkpoint_at_half_the_lr_which_a_resume_keeps",
    ),
    M(
        "rollback-ignores-the-checkpoint",
        "roll-back",
        "oneword/run.py",
        "        if self.checkpoint.is_file():\n            self.load()",
        "        if False:\n            self.load()",
        LEARN + "test_a_run_of_bad_steps_rolls_back_to_the_checkpoint_at_half_the_lr_which_a_resume_keeps",
    ),
    M(
        "learning-rate-ignores-rollbacks",
        "roll-back",
        "oneword/invert.py",
        "cfg.lr * warm * run.lr_scale",
        "cfg.lr * warm",
        LEARN + "test_a_run_of_bad_steps_rolls_back_to_the_checkpoint_at_half_the_lr_which_a_resume_keeps",
    ),
    # ---------------------------------------------------------------- early stopping
    M(
        "early-stopping-never-stops",
        "early stopping",
        "oneword/early_stopping.py",
        "return slope >= -z * se",
        "return slope >= z * se",
        LEARN + "test_stopping_rule_waits_for_a_falling_loss_and_stops_a_flat_one",
    ),
    M(
        "early-stopping-ignores-min-steps",
        "early stopping",
        "oneword/early_stopping.py",
        "self.stopped = step >= self.min_steps and loss_stopped_falling(",
        "self.stopped = loss_stopped_falling(",
        LEARN + "test_early_stopping_ends_a_converged_run_and_says_so",
    ),
    # ---------------------------------------------------------------- the learned word and its files
    M(
        "learned-rows-never-used",
        "learning",
        "oneword/invert.py",
        "return torch.where(is_new.unsqueeze(-1), learned, out)",
        "return out",
        LEARN + "test_only_the_new_vector_changes_and_frozen_weights_are_bit_identical",
    ),
    M(
        "saved-word-rounded-to-fp16",
        "saved word",
        "oneword/run.py",
        "self.vectors.detach().float().cpu().clone()",
        "self.vectors.detach().half().float().cpu().clone()",
        "tests/test_concept.py::test_learned_word_is_the_optimisers_vector_bit_for_bit",
    ),
    M(
        "saved-word-scaled-by-0.99",
        "saved word",
        "oneword/run.py",
        "self.vectors.detach().float().cpu().clone()",
        "(self.vectors.detach().float().cpu() * 0.99).clone()",
        "tests/test_concept.py::test_learned_word_is_the_optimisers_vector_bit_for_bit",
    ),
    M(
        "safetensors-header-checked-after-reading",
        "formats",
        "oneword/formats/safetensors_layouts.py",
        "    header, meta = parse_header(data, where)\n    try:\n        tensors = safetensors.torch.load(data)\n",
        "    try:\n        tensors = safetensors.torch.load(data)\n        header, meta = parse_header(data, where)\n",
        "tests/test_concept.py::test_a_refused_header_never_reaches_the_tensor_reader",
    ),
    M(
        "loader-unpickles",
        "formats",
        "oneword/formats/torch_zip.py",
        "weights_only=True, mmap=mmap)",
        "weights_only=False, mmap=mmap)",
        "tests/test_concept.py::test_pickles_that_run_code_are_refused_and_nothing_runs",
        "tests/test_concept.py::test_loader_source_never_unpickles",
    ),
    M(
        "safetensors-metadata-dropped",
        "formats",
        "oneword/formats/safetensors_layouts.py",
        "for k, v in tensors.items()}, metadata=meta)",
        "for k, v in tensors.items()}, metadata=None)",
        "tests/test_concept.py::test_every_format_round_trips_exactly",
    ),
    # ---------------------------------------------------------------- installing words
    M(
        "install-twice-is-not-a-no-op",
        "install",
        "oneword/install.py",
        "concepts = [c for c in concepts if not _already_installed(pipe, c)]",
        "concepts = list(concepts)",
        "tests/test_concept.py::test_install_twice_is_a_no_op_but_a_different_word_is_refused",
    ),
    M(
        "prompt-expansion-drops-vectors",
        "install",
        "oneword/install.py",
        'return " ".join([head] + vector_token_names(t, n)[1:])',
        "return head",
        "tests/test_concept.py::test_expand_prompt",
    ),
    # ---------------------------------------------------------------- metrics
    M(
        "editability-sign-flipped",
        "metrics",
        "oneword/metrics.py",
        "return (g @ t.T).squeeze(1)",
        "return -(g @ t.T).squeeze(1)",
        "tests/test_evaluate.py::test_editability_is_the_mean_cosine_between_each_edit_text_and_its_samples",
    ),
    M(
        "reconstruction-max-not-mean",
        "metrics",
        "oneword/metrics.py",
        "return (g @ p.T).mean(1)",
        "return (g @ p.T).max(1).values",
        "tests/test_evaluate.py::test_reconstruction_is_the_mean_pairwise_cosine_and_the_photos_beat_unrelated_sets",
    ),
    M(
        "prompts-not-weighed-equally",
        "metrics",
        "oneword/metrics.py",
        "return float(np.mean([_point(c) for c in x]))",
        "return float(np.mean(np.concatenate(_leaves(x))))",
        "tests/test_evaluate.py::test_bootstrap_interval_contains_the_mean_and_narrows_with_more_samples",
    ),
    # ---------------------------------------------------------------- edit
    M(
        "edit-installs-only-the-first-word",
        "edit",
        "oneword/editing.py",
        "install_concepts(model, list(concepts))",
        "install_concepts(model, list(concepts)[:1])",
        "tests/test_edit.py::test_every_learned_word_of_the_prompt_reaches_the_text_encoder",
    ),
    M(
        "edit-does-not-restore-the-photo",
        "edit",
        "oneword/editing.py",
        "composite(photo, im, alpha) if restore else im",
        "im",
        "tests/test_edit.py::test_edit_keeps_every_unmasked_pixel",
    ),
    # ---------------------------------------------------------------- checkpoint writes
    M(
        "learn-leaves-stale-temporaries",
        "checkpoint writes",
        "oneword/invert.py",
        "        remove_stale_temporaries(out_dir)\n",
        "",
        "tests/test_safeio.py::test_learn_removes_a_stale_temporary_from_its_run_folder",
    ),
    M(
        "stale-clean-up-removes-nothing",
        "checkpoint writes",
        "oneword/safeio.py",
        "        _unlink_quietly(p)\n        n += 1",
        "        n += 1",
        "tests/test_safeio.py::test_stale_temporaries_are_removed_and_nothing_else",
    ),
    M(
        "checkpoint-written-in-place",
        "checkpoint writes",
        "oneword/run.py",
        "atomic_write_bytes(self.checkpoint, save(tensors, metadata=meta))",
        "self.checkpoint.write_bytes(save(tensors, metadata=meta))",
        "tests/test_safeio.py::test_a_checkpoint_write_that_fails_halfway_keeps_the_previous_checkpoint_and_resume_is_exact",
    ),
    M(
        "resume-forgets-the-run-of-bad-steps",
        "resume",
        "oneword/run.py",
        "            self.guard.load_state_dict(state)",
        "            pass",
        LEARN + "test_a_run_of_bad_steps_that_spans_a_resume_rolls_back_as_without_the_break",
    ),
    M(
        "ctrl-c-saves-in-the-middle-of-a-step",
        "resume",
        "oneword/run.py",
        "            if callable(signal.getsignal(signal.SIGINT)):",
        "            if False:",
        "tests/test_crash.py::test_ctrl_c_at_random_moments_then_resume_equals_uninterrupted",
    ),
    # ---------------------------------------------------------------- outside the core
    M(
        "atomic-write-skips-fsync",
        "file safety",
        "oneword/safeio.py",
        "            os.fsync(f.fileno())\n",
        "",
        "tests/test_safeio.py::test_full_disk_keeps_the_previous_file",
        core=False,
    ),
    M(
        "demo-resumes-another-models-word",
        "demo",
        "oneword/demo.py",
        'if ckpt.exists() and checkpoint_fingerprint(ckpt) != model.identity.get("fingerprint"):',
        "if False:",
        "tests/test_demo.py::test_a_rerun_resumes_only_a_checkpoint_of_the_same_model",
        core=False,
    ),
    M(
        "fair-photos-one-colour",
        "world",
        "oneword/world/concepts.py",
        "colour = BALANCED_SET[i % len(BALANCED_SET)]",
        "colour = BALANCED_SET[i % 2]",
        "tests/test_world.py::test_biased_word_and_fair_photos",
        core=False,
    ),
    M(
        "profile-bound-other-not-the-rest",
        "benchmarks",
        "benchmarks/profile_bound.py",
        'kinds["other"] = block["total_ms"] - sum(kinds.values())',
        'kinds["other"] = block["total_ms"]',
        "tests/test_engine.py::test_profile_bound_splits_device_time_by_kind_of_work",
        core=False,
    ),
    M(
        "learn-many-ignores-the-encoders-start",
        "many",
        "oneword/many.py",
        "cfg, init = start(model, cfg, job.photos)",
        'init = start(model, __import__("dataclasses").replace(cfg, init=None), job.photos)[1]',
        "tests/test_init.py::test_learn_many_starts_each_word_where_learn_would",
        core=False,
    ),
    M(
        "photo-encoder-batch-reads-one-word",
        "init",
        "oneword/encoder_training.py",
        "return torch.where(ids >= f, ids + b, ids)",
        "return ids",
        "tests/test_sdxl.py::test_each_sample_of_an_encoder_batch_reads_its_own_word_in_both_encoders",
        core=False,
    ),
    M(
        "photo-encoder-leaves-its-embeddings-in-the-model",
        "init",
        "oneword/encoder_training.py",
        """        for e, original in zip(encoders, originals):
            e.text_encoder.set_input_embeddings(original)""",
        """        pass""",
        "tests/test_init.py::test_an_encoder_for_a_real_model_trains_only_itself_and_learn_starts_from_it",
        core=False,
    ),
]


# ------------------------------------------------------------------------------------------ the copy
def make_copy(dest: Path, ref: str | None) -> None:
    """The repository's files into `dest`: the working tree's tracked and untracked-but-not-ignored files, or
    the tree of commit `ref` (a clean checkout)."""
    if ref:
        archive = subprocess.run(
            ["git", "-C", str(ROOT), "archive", "--format=tar", ref], check=True, capture_output=True
        ).stdout
        with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
            if hasattr(tarfile, "data_filter"):  # Python >= 3.11.4 / 3.10.12: refuse odd members
                tar.extractall(dest, filter="data")
            else:
                tar.extractall(dest)
        return
    names = (
        subprocess.run(
            ["git", "-C", str(ROOT), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
            check=True,
            capture_output=True,
        )
        .stdout.decode()
        .split("\0")
    )
    for name in filter(None, names):
        src = ROOT / name
        if src.is_file() and not src.is_symlink():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / name)


def pytest_env(copy: Path) -> dict:
    env = dict(
        os.environ,
        HF_HUB_OFFLINE="1",
        PYTHONDONTWRITEBYTECODE="1",
        PYTHONPATH=str(copy),
        ONEWORD_FUZZ_SEED=os.environ.get("ONEWORD_FUZZ_SEED", "0"),
        TOKENIZERS_PARALLELISM="false",
    )
    env.pop("PYTHONSTARTUP", None)
    return env


def run_tests(copy: Path, tests, timeout: float) -> tuple[int | None, float, str]:
    """(pytest's exit code or None on timeout, seconds, output) for `tests` in `copy`."""
    cmd = [sys.executable, "-m", "pytest", "-x", "-q", "-rf", "-p", "no:cacheprovider", *tests]
    t0 = time.perf_counter()
    try:
        r = subprocess.run(cmd, cwd=copy, env=pytest_env(copy), capture_output=True, text=True, timeout=timeout)
        return r.returncode, time.perf_counter() - t0, r.stdout + r.stderr
    except subprocess.TimeoutExpired as e:
        out = (e.stdout or b"").decode(errors="replace") if isinstance(e.stdout, bytes) else (e.stdout or "")
        return None, time.perf_counter() - t0, out


def first_failure(output: str) -> str:
    m = re.search(r"^FAILED (\S+)", output, re.M) or re.search(r"^ERROR (\S+)", output, re.M)
    return m.group(1) if m else ""


def mutate_and_run(copy: Path, m: Mutation, timeout: float) -> dict:
    path = copy / m.file
    result = {"name": m.name, "area": m.area, "core": m.core, "file": m.file, "tests": list(m.tests)}
    text = path.read_text() if path.is_file() else ""
    count = text.count(m.old)
    if count != 1:
        return {
            **result,
            "result": "stale",
            "seconds": 0.0,
            "detail": f"the text to mutate occurs {count} times in {m.file} (expected once): update the entry",
        }
    path.write_text(text.replace(m.old, m.new))
    try:
        rc, seconds, out = run_tests(copy, m.tests, timeout)
    finally:
        path.write_text(text)
    if rc is None:
        status, detail = "killed", f"timed out after {timeout:.0f} s"
    elif rc in (1, 2):
        status, detail = "killed", first_failure(out) or f"pytest exit {rc} (the mutant does not import)"
    elif rc == 0:
        status, detail = "survived", ""
    else:
        status, detail = "error", f"pytest exit {rc}: " + " | ".join(out.strip().splitlines()[-3:])
    return {**result, "result": status, "seconds": round(seconds, 1), "detail": detail}


# ------------------------------------------------------------------------------------------ main
def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--ref", help="mutate this commit (a clean checkout of it) instead of the working tree")
    ap.add_argument("--only", nargs="+", metavar="NAME", help="these mutations only")
    ap.add_argument("--list", action="store_true", help="list the mutations and their tests, run nothing")
    ap.add_argument("--jobs", type=int, default=1, help="mutations run at once, each in its own copy (default 1)")
    ap.add_argument("--timeout", type=float, default=600, help="seconds a mutation's tests may run (default 600)")
    ap.add_argument("--no-baseline", action="store_true", help="skip the unmutated run of the selected tests")
    ap.add_argument("--json", help="write the results to this file")
    ap.add_argument("--keep", action="store_true", help="keep the temporary copies (their paths are printed)")
    args = ap.parse_args(argv)

    names = {m.name for m in MUTATIONS}
    if len(names) != len(MUTATIONS):
        print("error: two mutations share a name", file=sys.stderr)
        return 2
    chosen = MUTATIONS
    if args.only:
        unknown = sorted(set(args.only) - names)
        if unknown:
            print(f"error: unknown mutation(s) {', '.join(unknown)}; see --list", file=sys.stderr)
            return 2
        chosen = [m for m in MUTATIONS if m.name in args.only]
    if args.list:
        for m in chosen:
            print(f"{m.name:48s} {'core' if m.core else '    '} {m.file}\n{'':54s}{' '.join(m.tests)}")
        return 0

    jobs = max(1, min(args.jobs, len(chosen)))
    copies = [Path(tempfile.mkdtemp(prefix="oneword-mutate-")) for _ in range(jobs)]
    try:
        for c in copies:
            make_copy(c, args.ref)
        where = subprocess.run(
            [sys.executable, "-c", "import oneword; print(oneword.__file__)"],
            cwd=copies[0],
            env=pytest_env(copies[0]),
            capture_output=True,
            text=True,
        ).stdout.strip()
        if not where.startswith(str(copies[0])):
            print(f"error: the copy imports oneword from {where or '?'}, not from itself", file=sys.stderr)
            return 2
        source = f"commit {args.ref}" if args.ref else "the working tree"
        print(f"mutation testing {len(chosen)} mutations of {source} in {', '.join(map(str, copies))}", flush=True)
        if not args.no_baseline:
            selected = list(dict.fromkeys(t for m in chosen for t in m.tests))
            rc, seconds, out = run_tests(copies[0], selected, args.timeout * 2)
            print(
                f"baseline: {len(selected)} test selections unmutated, {seconds:.0f} s: "
                f"{'pass' if rc == 0 else 'FAIL'}",
                flush=True,
            )
            if rc != 0:
                print(out[-4000:], file=sys.stderr)
                print("error: the selected tests must pass unmutated first", file=sys.stderr)
                return 2

        def work(i_m):
            i, m = i_m
            r = mutate_and_run(copies[i % jobs], m, args.timeout)
            print(
                f"  {r['result']:8s} {r['seconds']:6.1f} s  {'core ' if m.core else '     '}{m.name}"
                f"{'  <- ' + r['detail'] if r['detail'] else ''}",
                flush=True,
            )
            return r

        if jobs == 1:
            results = [work((0, m)) for m in chosen]
        else:  # copy i runs mutations i, i + jobs, ...: one mutation per copy at a time
            lanes = [[(i, m) for k, m in enumerate(chosen) if k % jobs == i] for i in range(jobs)]
            with ThreadPoolExecutor(jobs) as pool:
                done = list(pool.map(lambda lane: [work(x) for x in lane], lanes))
            by_name = {r["name"]: r for lane in done for r in lane}
            results = [by_name[m.name] for m in chosen]
    finally:
        if args.keep:
            print("copies kept: " + " ".join(map(str, copies)))
        else:
            for c in copies:
                shutil.rmtree(c, ignore_errors=True)

    killed = [r for r in results if r["result"] == "killed"]
    survived = [r for r in results if r["result"] == "survived"]
    broken = [r for r in results if r["result"] in ("stale", "error")]
    core_survivors = [r for r in survived if r["core"]]
    print(f"\nscore: {len(killed)} of {len(results)} killed ({len(survived)} survived, {len(broken)} stale or error)")
    for label, rows in (
        ("core survivors", core_survivors),
        ("other survivors", [r for r in survived if not r["core"]]),
        ("stale or error", broken),
    ):
        if rows:
            print(f"{label}: " + ", ".join(r["name"] for r in rows))
    if args.json:
        Path(args.json).write_text(
            json.dumps(
                {"source": args.ref or "working tree", "results": results, "mutations": [asdict(m) for m in chosen]},
                indent=2,
            )
            + "\n"
        )
    return 1 if core_survivors or broken else 0


if __name__ == "__main__":
    raise SystemExit(main())
