"""MirroredStrategy over 2 and 4 logical CPUs: same loss and gradients as one device.

The comparisons run in a subprocess (`_mirrored_worker.py`), because logical devices
must be configured before TensorFlow initialises and the pytest process is shared with
other test files. Each subprocess runs once per module and writes a JSON report; the
tests below assert on it, one test per loss / algorithm. The two subprocesses (losses,
models) run side by side, once per session even under pytest-xdist.

What is compared, on the same global batch of 8 split across the replicas:

- losses: the value (sum of the replicas' Keras-reduced losses), the gradient of the
  variables of a small embedding layer (summed over replicas, as Keras' optimizer
  does) and the gradient of the inputs (each replica's slice, concatenated), for two
  consecutive steps (queues and memories fill up at the first);
- `ContrastiveModel`: every weight (online, target network, MoCo's queue) after
  `fit` for 2 SGD steps from the same initial weights. The backbone and heads have no
  BatchNorm, except in the `simclr_sync_bn` case, whose heads use synchronized
  BatchNorm and still match exactly; `simclr_local_bn` (per-replica BatchNorm) is
  expected to differ.
"""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.distribute._cases import ALGORITHMS, LOCAL_ONLY, LOSS_NAMES, REPLICAS, UNEVEN

HERE = Path(__file__).parent
TOL = 1e-5


def _run_workers(out_dir):
    """Runs the losses and models workers side by side; returns their reports."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": ""}
    procs = {}
    for task in ("losses", "models"):
        log = open(out_dir / f"{task}.log", "w")
        procs[task] = subprocess.Popen(
            [sys.executable, str(HERE / "_mirrored_worker.py"), task, str(out_dir / task)],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    failures = []
    for task, proc in procs.items():
        try:
            proc.wait(timeout=900)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.returncode != 0:
            failures.append(
                f"{task} worker failed:\n{(out_dir / f'{task}.log').read_text()[-4000:]}"
            )
    if failures:
        return {"error": "\n".join(failures)}
    return {task: json.loads((out_dir / task).read_text()) for task in procs}


@pytest.fixture(scope="module")
def reports(tmp_path_factory):
    """The workers' reports, computed once per test session.

    Under pytest-xdist every worker process would run a module-scoped fixture; the
    first one to take the lock runs the subprocesses, the others read its result.
    """
    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent  # shared by the workers of this session
    out_dir = root / "tfcontrast_distribute_mirrored"
    out_dir.mkdir(exist_ok=True)
    result = out_dir / "reports.json"
    with open(out_dir / "lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            if not result.exists():
                result.write_text(json.dumps(_run_workers(out_dir)))
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    data = json.loads(result.read_text())
    if "error" in data:
        pytest.fail(data["error"])
    return data


@pytest.fixture
def loss_report(reports):
    return reports["losses"]


@pytest.fixture
def model_report(reports):
    return reports["models"]


def _close(entry, key):
    """Error within TOL, relative to the quantity's scale when it exceeds 1."""
    scale = max(1.0, abs(entry.get(key.replace("_err", "_scale"), entry.get("loss", 1.0))))
    return entry[key] <= TOL * scale


@pytest.mark.parametrize("name", LOSS_NAMES)
def test_loss_and_gradients_match_one_device(name, loss_report):
    for replicas in REPLICAS:
        for step in (0, 1):
            entry = loss_report["matrix"][f"{replicas}/{step}"][name]
            where = f"{name}, {replicas} replicas, step {step}: {entry}"
            assert _close(entry, "loss_err"), where
            assert _close(entry, "grad_var_err"), where
            assert _close(entry, "grad_input_err"), where


@pytest.mark.parametrize("name", UNEVEN)
def test_uneven_replica_batches_match_one_device(name, loss_report):
    entry = loss_report["uneven"][name]
    assert _close(entry, "loss_err"), entry
    assert _close(entry, "grad_var_err"), entry
    assert _close(entry, "grad_input_err"), entry


@pytest.mark.parametrize("name", LOCAL_ONLY)
def test_without_the_gather_replicas_see_only_their_batch(name, loss_report):
    # The control that shows the comparison can fail: gather switched off, the
    # replicas contrast (or take statistics of) their local half only.
    entry = loss_report["local_only"][name]
    assert entry["loss_err"] > 1e-3 or entry["grad_var_err"] > 1e-3, entry


@pytest.mark.parametrize("algorithm", list(ALGORITHMS) + ["simclr_sync_bn"])
def test_fit_step_matches_one_device(algorithm, model_report):
    entry = model_report[algorithm]
    assert entry["moved"] > 1e-3, entry  # the step did change the weights
    for replicas in REPLICAS:
        scale = max(1.0, entry["weight_scale"])
        assert entry[str(replicas)]["weight_err"] <= TOL * scale, (replicas, entry)
        assert entry[str(replicas)]["loss_err"] <= TOL * max(1.0, abs(entry["loss"])), entry


def test_per_replica_batch_norm_differs_from_one_device(model_report):
    # Why synchronized BatchNorm matters: local statistics change the step.
    assert model_report["simclr_local_bn"]["2"]["weight_err"] > 1e-4
