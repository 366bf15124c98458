"""learn-many on a local Ray cluster (2 CPU workers, the world model): a worker killed mid-run loses no concept,
and every word equals the uninterrupted run's (CPU)."""

import json
import os
import signal
import time

import pytest
import torch

from oneword.formats import load_concepts
from oneword.many import Job, learn_many

from conftest import write_photos

ray = pytest.importorskip("ray")

SETTINGS = dict(batch_size=2, save_every=5, val_every=5, min_steps=1000, lr=2e-2)
SPECS = [
    dict(token="<ring>", init="ring", steps=60, seed=0),
    dict(token="<blob>", init="circle", steps=45, seed=1),
    dict(token="<dot>", init="star", vectors=2, steps=30, seed=2),
]


def test_a_killed_worker_loses_no_concept(tmp_path):
    from oneword.distributed import RayLearnMany
    from oneword.models import load_model

    jobs = [
        Job(photos=str(write_photos(tmp_path / "p" / str(i), n=3, size=64, seed=i)), **s) for i, s in enumerate(SPECS)
    ]
    started = time.perf_counter()
    driver = RayLearnMany(
        "local",
        None,
        "cpu",
        [Job(**{**j.__dict__}) for j in jobs],
        tmp_path / "ray",
        slots=2,
        init=dict(num_cpus=2, _node_ip_address="127.0.0.1"),
        **SETTINGS,
    )
    try:
        driver.start()
        # wait until a worker holds a concept that has checkpointed, then SIGKILL that worker's process
        victim = None
        while victim is None and time.perf_counter() - started < 240:
            for job, worker in driver.holders().items():
                run = tmp_path / "ray" / SPECS[job]["token"].strip("<>") / "run.json"
                if run.is_file() and json.loads(run.read_text()).get("step", 0) >= 5:
                    victim = worker
                    break
            time.sleep(0.2)
        assert victim is not None, "no concept checkpointed in time"
        lost = [j for j, w in driver.holders().items() if w == victim]
        os.kill(driver.worker_pids()[victim], signal.SIGKILL)
        rows = driver.wait(timeout=300)
    finally:
        ray.shutdown()
    assert [r["status"] for r in rows] == ["done"] * 3, rows
    assert lost  # the killed worker held concepts that another worker then finished
    # the uninterrupted run in one process, the same slots (fixed shapes, job i in slot i % 2)
    model = load_model(None, device="cpu")
    learn_many(
        model,
        [Job(**{**j.__dict__, "out": None}) for j in jobs],
        tmp_path / "whole",
        slots=2,
        fixed_shapes=True,
        progress=False,
        **SETTINGS,
    )
    for s in SPECS:
        name = s["token"].strip("<>")
        a = load_concepts(tmp_path / "ray" / name / "learned_embeds.safetensors")[0].vectors
        b = load_concepts(tmp_path / "whole" / name / "learned_embeds.safetensors")[0].vectors
        assert torch.equal(a, b), name
