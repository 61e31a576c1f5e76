"""Worker side of the benchmark protocol (stdlib + NumPy only).

Every library under test runs in its own process and its own virtual environment:
`tfcontrast_worker.py` (the tfcontrast venv), `tfsim_worker.py` (TensorFlow Similarity,
legacy Keras) and `lightly_worker.py` (CPU PyTorch). The driver
(`benchmarks/_common.py`) talks to a worker over stdin/stdout, one JSON object per line,
so that it can alternate the libraries (ours, theirs, ours, theirs, ...) without paying
a process start per measurement. A worker module defines `CASES`, a dict
`name -> builder(batch, dim) -> step`, where `step()` runs one forward + backward pass
and returns the loss value as a float, and calls `serve(CASES, info)`.

The `graph` command returns a case's traced step as a serialised graph, for the
TensorFlow workers whose builders attach one (`_tf_graphs.py`).

Memory mode (`python worker.py --memory CASE BATCH DIM`) measures the peak resident set
increase of one case in a fresh process and exits.

This file must not import TensorFlow, Keras or PyTorch: each worker imports its own.
"""

from __future__ import annotations

import json
import resource
import sys
import time

import numpy as np

#: Replies start with this marker, so that a library printing to stdout cannot break
#: the protocol.
MARKER = "@@BENCH@@ "
SEED = 1234

#: Hyper-parameters shared by every side, so that each pair computes the same objective.
HPARAMS = {
    "triplet_margin": 0.2,  # hinge margin (TF Similarity: margin=0.2, not its soft default)
    "ms_alpha": 2.0,
    "ms_beta": 40.0,
    "ms_lmda": 0.5,
    "ms_epsilon": 0.1,  # + center=1
    "circle_margin": 0.4,
    "circle_gamma": 80.0,
    "snn_temperature": 1.0,  # squared Euclidean distance on both sides
    "ntxent_temperature": 0.1,
    "vicreg_lambda": 25.0,
    "vicreg_mu": 25.0,
    "vicreg_nu": 1.0,
    "vicreg_eps": 1e-4,
    "barlow_lambda": 5e-3,
}
THREADS = 2  # intra-op threads on every side; inter-op 1


def supervised_data(batch: int, dim: int, seed: int = SEED):
    """Labels `(B,)` int32 with `B / 8` classes of 8 (every anchor has 7 positives), and
    L2-normalised float32 embeddings `(B, D)`. Identical in every process."""
    rng = np.random.default_rng(seed)
    num_classes = max(batch // 8, 2)
    labels = rng.permutation(np.arange(batch) % num_classes).astype("int32")
    x = rng.standard_normal((batch, dim)).astype("float32")
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return labels, x


def view_data(batch: int, dim: int, seed: int = SEED):
    """Two correlated views `(B, 2, D)` float32 (second = first + noise). Identical in
    every process."""
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((batch, dim)).astype("float32")
    b = a + 0.5 * rng.standard_normal((batch, dim)).astype("float32")
    return np.stack([a, b], axis=1)


def max_rss_mb() -> float:
    """Peak resident set size of this process so far, in MiB (Linux: KiB units)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _reply(obj) -> None:
    sys.stdout.write(MARKER + json.dumps(obj) + "\n")
    sys.stdout.flush()


def _time_step(step, warmup: int, min_repeats: int, max_repeats: int, min_time: float):
    value = None
    for _ in range(warmup):
        value = step()
    times = []
    start = time.perf_counter()
    while len(times) < max_repeats:
        t0 = time.perf_counter()
        value = step()
        times.append(time.perf_counter() - t0)
        if len(times) >= min_repeats and time.perf_counter() - start >= min_time:
            break
    return times, value


def _memory(cases, name: str, batch: int, dim: int) -> dict:
    # Warm the library at a small batch (imports, kernels, one trace), take the peak
    # RSS as the baseline, then run the large batch: the increase of the high-water
    # mark is the extra memory that batch needed (it also includes one more graph
    # trace, a few MiB, on every side alike).
    small = cases[name](64, dim)
    for _ in range(2):
        small()
    baseline = max_rss_mb()
    step = cases[name](batch, dim)
    value = None
    for _ in range(3):
        value = step()
    peak = max_rss_mb()
    return {
        "case": name,
        "batch": batch,
        "dim": dim,
        "baseline_mb": baseline,
        "peak_mb": peak,
        "increase_mb": peak - baseline,
        "value": value,
    }


def serve(cases: dict, info: dict) -> None:
    """Runs the worker: memory mode from the command line, else the JSON-line loop."""
    if len(sys.argv) >= 5 and sys.argv[1] == "--memory":
        name, batch, dim = sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
        try:
            _reply({"ok": True, **_memory(cases, name, batch, dim)})
        except Exception as error:  # report, do not hang the driver
            _reply({"ok": False, "error": f"{type(error).__name__}: {error}"[:2000]})
        return

    built: dict = {}
    _reply({"ok": True, "ready": True, "info": info, "cases": sorted(cases)})
    for line in sys.stdin:
        if not line.strip():
            continue
        request = json.loads(line)
        command = request.get("cmd")
        if command == "quit":
            _reply({"ok": True})
            return
        if command not in ("time", "graph"):
            _reply({"ok": False, "error": f"unknown command {command!r}"})
            continue
        key = (request["case"], request["batch"], request["dim"])
        try:
            first = key not in built
            if first:
                built.clear()  # free the previous configuration's tensors
                built[key] = cases[key[0]](key[1], key[2])
            if command == "graph":  # the step's graph (`_tf_graphs.py`), untimed
                if not hasattr(built[key], "graph"):
                    raise ValueError(f"case {key[0]!r} of this worker exports no graph")
                _reply({"ok": True, **built[key].graph()})
                continue
            times, value = _time_step(
                built[key],
                warmup=request.get("warmup", 2) if first else 1,
                min_repeats=request.get("min_repeats", 3),
                max_repeats=request.get("max_repeats", 20),
                min_time=request.get("min_time", 1.0),
            )
            _reply({"ok": True, "times": times, "value": value})
        except Exception as error:
            built.pop(key, None)
            _reply({"ok": False, "error": f"{type(error).__name__}: {error}"[:2000]})
