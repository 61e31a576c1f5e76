"""MultiWorkerMirroredStrategy: 2 worker processes on 127.0.0.1, and fault tolerance.

Each test starts the workers of `_multi_worker.py` as subprocesses (TF_CONFIG built from
two free local ports) and compares their final weights with the same training on one
device in this process.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

HERE = Path(__file__).parent
WORKER = HERE / "_multi_worker.py"
TIMEOUT = 240  # seconds for one cluster run; the machine may be shared and slow


def free_ports(count=2):
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def launch(out_dir, kill=None):
    """Starts both workers; `kill=(worker, epoch, batch)` makes that worker die there."""
    ports = ",".join(str(p) for p in free_ports())
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": ""}
    procs = []
    for index in range(2):
        args = [sys.executable, str(WORKER), str(out_dir), str(index), ports]
        if kill is not None and kill[0] == index:
            args += [str(kill[1]), str(kill[2])]
        log = open(Path(out_dir) / f"worker{index}.log", "ab")
        procs.append(subprocess.Popen(args, env=env, stdout=log, stderr=subprocess.STDOUT))
    return procs


def wait_all(procs, out_dir, timeout=TIMEOUT):
    deadline = time.monotonic() + timeout
    try:
        for proc in procs:
            proc.wait(timeout=max(1.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        for proc in procs:
            proc.kill()
        pytest.fail(f"workers timed out; logs:\n{logs(out_dir)}")
    return [proc.returncode for proc in procs]


def logs(out_dir):
    text = []
    for index in range(2):
        path = Path(out_dir) / f"worker{index}.log"
        if path.exists():
            text.append(f"--- worker {index} ---\n" + path.read_text()[-3000:])
    return "\n".join(text)


def epochs_logged(out_dir, index):
    path = Path(out_dir) / f"epochs_{index}.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines()]


def final_weights(out_dir, index):
    with np.load(Path(out_dir) / f"weights_{index}.npz") as f:
        return [f[f"arr_{i}"] for i in range(len(f.files))]


@pytest.fixture(scope="module")
def reference():
    sys.path.insert(0, str(HERE))
    try:
        import _multi_worker
    finally:
        sys.path.remove(str(HERE))
    return _multi_worker.reference_weights()


def assert_same_weights(got, expected):
    assert len(got) == len(expected)
    for g, e in zip(got, expected):
        np.testing.assert_allclose(g.astype("float64"), e.astype("float64"), rtol=1e-5, atol=1e-5)


def test_two_workers_train_like_one_device(tmp_path, reference):
    codes = wait_all(launch(tmp_path), tmp_path)
    assert codes == [0, 0], logs(tmp_path)
    for index in range(2):
        events = [(e["event"], e["epoch"]) for e in epochs_logged(tmp_path, index)]
        assert events == [
            ("begin", 0),
            ("end", 0),
            ("begin", 1),
            ("end", 1),
            ("begin", 2),
            ("end", 2),
        ]
        assert_same_weights(final_weights(tmp_path, index), reference)


def test_backup_and_restore_resumes_after_a_worker_dies(tmp_path, reference):
    # Worker 1 dies at the second batch of epoch 1. Worker 0 then waits forever in a
    # collective for its peer, as a real job would until the cluster manager kills it.
    procs = launch(tmp_path, kill=(1, 1, 1))
    try:
        procs[1].wait(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        for proc in procs:
            proc.kill()
        pytest.fail(f"worker 1 never reached the kill point; logs:\n{logs(tmp_path)}")
    assert procs[1].returncode == 17, logs(tmp_path)
    procs[0].kill()
    procs[0].wait()
    first = [(e["event"], e["epoch"]) for e in epochs_logged(tmp_path, 1)]
    assert first == [("begin", 0), ("end", 0), ("begin", 1), ("killed", 1)]
    assert not (tmp_path / "weights_0.npz").exists()

    # Restart both: BackupAndRestore reloads the end of epoch 0 and runs epochs 1 and 2,
    # once each: nothing lost, nothing repeated.
    for index in range(2):
        (tmp_path / f"epochs_{index}.jsonl").unlink(missing_ok=True)
    codes = wait_all(launch(tmp_path), tmp_path)
    assert codes == [0, 0], logs(tmp_path)
    for index in range(2):
        events = [(e["event"], e["epoch"]) for e in epochs_logged(tmp_path, index)]
        assert events == [("begin", 1), ("end", 1), ("begin", 2), ("end", 2)]
        # Same weights as 3 uninterrupted epochs on one device (optimizer momentum
        # included: the backup holds the optimizer state too).
        assert_same_weights(final_weights(tmp_path, index), reference)
