"""A learning job of `oneword ui`: `oneword learn ARGS` in its own process, plus a progress log for the page.

    python -m oneword.ui.worker PROGRESS_JSONL learn PHOTOS --token ... --out RUN_DIR
    python -m oneword.ui.worker PROGRESS_JSONL learn --resume RUN_DIR

The job is exactly the command (its checkpoints, its exact resume, its run.json, its previews); SIGINT makes it
checkpoint and stop, as Ctrl-C does in a terminal. What the command shows only in its progress bar (the step,
the loss at each check point) is appended to PROGRESS_JSONL as JSON lines, at most every half second plus
once at each check point, by a subclass of the bar itself: nothing is added to the learning step.

Each line: {"t": unix time, "step": int, "total": int, "loss": float (at check points only)}; the first line of
each process has "start": true.
"""
from __future__ import annotations

import json
import os
import signal
import sys
import time

EVERY_S = 0.5


def install_progress_log(path: str) -> None:
    """Make every tqdm bar named "learning" also append its progress to `path` (before oneword is imported)."""
    import tqdm.auto

    base = tqdm.auto.tqdm

    class LoggedProgress(base):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self._log = kwargs.get("desc") == "learning"
            self._last = 0.0
            if self._log:
                self._write(start=True)

        def update(self, n=1):
            out = super().update(n)
            if self._log and time.monotonic() - self._last >= EVERY_S:
                self._write()
            return out

        def set_postfix(self, ordered_dict=None, refresh=True, **kwargs):
            super().set_postfix(ordered_dict, refresh, **kwargs)
            if self._log:
                loss = kwargs.get("loss", (ordered_dict or {}).get("loss"))
                try:
                    self._write(loss=float(loss))
                except (TypeError, ValueError):
                    self._write()

        def close(self):
            if getattr(self, "_log", False):
                self._write()
                self._log = False
            super().close()

        def _write(self, **extra) -> None:
            self._last = time.monotonic()
            record = {"t": round(time.time(), 3), "step": int(self.n), "total": int(self.total or 0), **extra}
            try:
                with open(path, "a", encoding="utf-8") as f:
                    f.write(json.dumps(record) + "\n")
            except OSError:  # the page's view of progress must never stop the learning
                pass

    tqdm.auto.tqdm = LoggedProgress


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if len(argv) < 2 or argv[1] != "learn":
        print("usage: python -m oneword.ui.worker PROGRESS_JSONL learn ...", file=sys.stderr)
        return 2
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    # Stop is SIGINT (the command checkpoints on it); a server started in the background of a shell ignores
    # SIGINT, and its children would inherit that
    signal.signal(signal.SIGINT, signal.default_int_handler)
    install_progress_log(argv[0])
    try:
        from oneword.commands import main as command
    except ImportError:  # an older layout of the command
        from oneword.cli import main as command
    return command(argv[1:])


if __name__ == "__main__":
    sys.exit(main())
