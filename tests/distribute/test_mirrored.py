"""MirroredStrategy over 2 and 4 logical CPUs: same loss and gradients as one device.

The comparisons run in a subprocess (`_mirrored_worker.py`), because logical devices
must be configured before TensorFlow initialises and the pytest process is shared with
other test files. Each subprocess runs once per module and writes a JSON report; the
tests below assert on it, one test per loss / algorithm.

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

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.distribute._cases import ALGORITHMS, LOCAL_ONLY, LOSS_NAMES, REPLICAS, UNEVEN

HERE = Path(__file__).parent
TOL = 1e-5


def _run(task, tmp_path_factory):
    out = tmp_path_factory.mktemp(task) / "report.json"
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": ""}
    proc = subprocess.run(
        [sys.executable, str(HERE / "_mirrored_worker.py"), task, str(out)],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    if proc.returncode != 0:
        pytest.fail(f"{task} worker failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}")
    return json.loads(out.read_text())


@pytest.fixture(scope="module")
def loss_report(tmp_path_factory):
    return _run("losses", tmp_path_factory)


@pytest.fixture(scope="module")
def model_report(tmp_path_factory):
    return _run("models", tmp_path_factory)


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
        assert entry[str(replicas)]["weight_err"] <= TOL, (replicas, entry)
        assert entry[str(replicas)]["loss_err"] <= TOL * max(1.0, abs(entry["loss"])), entry


def test_per_replica_batch_norm_differs_from_one_device(model_report):
    # Why synchronized BatchNorm matters: local statistics change the step.
    assert model_report["simclr_local_bn"]["2"]["weight_err"] > 1e-4
