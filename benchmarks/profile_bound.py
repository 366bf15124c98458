"""How fast could the learning step be if everything but its big kernels were free? (the target: >= 300 img-steps/s)

Reads the profile `benchmarks/speed.py --profile FILE` writes (torch.profiler's table of ATen operations by device
time, one block per measurement) and splits each block's device time into the work only faster kernels can shrink
(attention, convolutions, matrix products, as cuDNN and cuBLAS run them) and everything else (normalisations,
activations, adds, copies: what fusion, e.g. torch.compile, can shrink). The bound it prints is the throughput
if everything else took no time at all, once as measured and once also without cuDNN's NCHW<->NHWC layout
transposes (which channels-last could remove). No fusion reaches it: a normalisation still reads and writes its
activations once.

The H200 table of benchmarks/results/h200-2026-11-28/ lists its top 40 rows only (speed.py writes every row): in
a cut table compute operations below the cut count as "other", which makes the bound optimistic (higher), never
pessimistic.
    python3 -m benchmarks.profile_bound benchmarks/results/h200-2026-11-28/profile.txt
"""

from __future__ import annotations

import argparse
import re
import sys

CLASSES = {  # ATen operation -> kind of work (the kernels each launches count as its self device time)
    "attention": (
        "aten::_cudnn_attention_forward",
        "aten::_cudnn_attention_backward",
        "aten::_flash_attention_forward",
        "aten::_flash_attention_backward",
        "aten::_efficient_attention_forward",
        "aten::_efficient_attention_backward",
        "aten::_scaled_dot_product_cudnn_attention",
        "aten::_scaled_dot_product_flash_attention",
    ),
    "convolution": ("aten::cudnn_convolution", "aten::convolution_backward", "aten::cudnn_convolution_transpose"),
    "matmul": ("aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm"),
}
TRANSPOSE_KERNELS = ("nchwToNhwcKernel", "nhwcToNchwKernel")  # cuDNN's layout changes, inside its convolutions
DEVICE_COLUMNS = ("Self CUDA", "Self XPU", "Self device")  # torch.profiler's name for it, by version
UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3}


def parse(text: str) -> list[dict]:
    """Each `## title` block: its title, batch, steps, per-row self device time (ms) and the total."""
    blocks = []
    for chunk in re.split(r"^## ", text, flags=re.M)[1:]:
        title, _, body = chunk.partition("\n")
        m = re.search(r"batch (\d+), (\d+) steps", title)
        total = re.search(r"Self (?:CUDA|XPU|device) time total: ([\d.]+)(us|ms|s)\b", body)
        lines = body.splitlines()
        header = next((re.split(r"\s{2,}", ln.strip()) for ln in lines if "Name" in ln), [])
        column = next((header.index(c) for c in DEVICE_COLUMNS if c in header), None)
        if not (m and total) or column is None:
            raise SystemExit(f"not a device profile block from speed.py --profile: {title!r}")
        rows = {}
        for ln in lines:
            fields = re.split(r"\s{2,}", ln.strip())  # names have single spaces, columns at least two
            value = re.fullmatch(r"([\d.]+)(us|ms|s)", fields[column]) if len(fields) == len(header) else None
            if value:
                rows[fields[0]] = rows.get(fields[0], 0.0) + float(value[1]) * UNITS[value[2]]  # truncated names repeat
        blocks.append(
            {
                "title": title.strip(),
                "image_steps": int(m[1]) * int(m[2]),
                "rows": rows,
                "total_ms": float(total[1]) * UNITS[total[2]],
            }
        )
    return blocks


def split(block: dict) -> dict[str, float]:
    """Device ms per kind of work; 'other' is the total less the compute operations found."""
    rows = block["rows"]
    kinds = {kind: sum(rows.get(op, 0.0) for op in ops) for kind, ops in CLASSES.items()}
    kinds["other"] = block["total_ms"] - sum(kinds.values())
    kinds["layout transposes"] = sum(ms for name, ms in rows.items() if any(k in name for k in TRANSPOSE_KERNELS))
    return kinds


def report(block: dict) -> str:
    kinds, n, total = split(block), block["image_steps"], block["total_ms"]
    lines = [
        f"{block['title']}: {total:.1f} ms of device time over {n} image-steps = {total / n:.2f} ms each "
        f"({1e3 * n / total:.1f} img-steps/s with the device never idle)"
    ]
    for kind in ("attention", "convolution", "matmul", "other"):
        extra = f" (of which cuDNN layout transposes {kinds['layout transposes']:.1f})" if kind == "convolution" else ""
        lines.append(f"  {kind:12s} {kinds[kind]:8.1f} ms {100 * kinds[kind] / total:5.1f} %{extra}")
    compute = total - kinds["other"]
    for label, ms in (
        ("if 'other' took no time", compute),
        ("and no layout transposes either", compute - kinds["layout transposes"]),
    ):
        lines.append(f"  bound {label:32s} {ms / n:.2f} ms per image-step -> {1e3 * n / ms:.0f} img-steps/s")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("profile", help="a file written by speed.py --profile on a GPU")
    args = ap.parse_args(argv)
    try:
        text = open(args.profile).read()
    except OSError as e:
        print(f"error: cannot read {args.profile}: {e.strerror}", file=sys.stderr)
        return 2
    for block in parse(text):
        print(report(block))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
