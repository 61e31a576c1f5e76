"""Times exported step graphs of several libraries side by side in one process.

Run by `bench_loss_graphs.py` with the tfcontrast venv's Python. Reads one JSON job from
stdin, `{"jobs": [{"key", "batch", "dim", "graphs": {side: exported graph}}], "cycles",
"chunk_s", "lone"}`, and replies (one marker line) with, per job, every side's per-call time of
each chunk. All graphs of a job run on the same supervised batch (`supervised_data`).
A cycle runs one chunk of calls per side (`chunk_s` long, at least 3 calls), the order
rotating from cycle to cycle, so that each side's chunk has the others next to it in
time.
"""

from __future__ import annotations

import json
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from _protocol import THREADS, _reply, supervised_data  # noqa: E402
from _tf_graphs import load  # noqa: E402

tf.config.threading.set_intra_op_parallelism_threads(THREADS)
tf.config.threading.set_inter_op_parallelism_threads(1)


def _calls_per_chunk(fn, args, chunk_s: float) -> int:
    t0 = time.perf_counter()
    for _ in range(5):
        float(fn(*args)[0])
    per_call = (time.perf_counter() - t0) / 5
    return max(3, int(chunk_s / per_call))


def run_job(job: dict, cycles: int, chunk_s: float, lone: float = 0.0) -> dict:
    batch, dim = job["batch"], job["dim"]
    labels, x = supervised_data(batch, dim)
    if lone:  # the first `lone` of the anchors get labels of their own: no positive
        count = int(lone * batch)
        labels[:count] = labels.max() + 1 + np.arange(count, dtype=labels.dtype)
    args = (tf.constant(labels), tf.constant(x))
    specs = [tf.TensorSpec(a.shape, a.dtype) for a in args]
    fns = {side: load(entry, specs, prefix=side) for side, entry in job["graphs"].items()}
    values = {side: float(fn(*args)[0]) for side, fn in fns.items()}
    for fn in fns.values():  # warm-up
        for _ in range(10):
            float(fn(*args)[0])
    calls = {side: _calls_per_chunk(fn, args, chunk_s) for side, fn in fns.items()}
    sides = list(fns)
    chunks = {side: [] for side in sides}
    for c in range(cycles):
        for side in sides[c % len(sides) :] + sides[: c % len(sides)]:
            fn, n = fns[side], calls[side]
            t0 = time.perf_counter()
            for _ in range(n):
                float(fn(*args)[0])
            chunks[side].append((time.perf_counter() - t0) / n)
    return {"key": job["key"], "values": values, "calls_per_chunk": calls, "chunks_s": chunks}


def main() -> None:
    request = json.loads(sys.stdin.read())
    results = []
    for job in request["jobs"]:
        try:
            results.append(
                run_job(job, request["cycles"], request["chunk_s"], request.get("lone", 0.0))
            )
        except Exception as error:  # report, do not hang the driver
            results.append({"key": job["key"], "error": f"{type(error).__name__}: {error}"[:2000]})
    _reply({"ok": True, "results": results})


if __name__ == "__main__":
    main()
