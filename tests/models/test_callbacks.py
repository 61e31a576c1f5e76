"""KNNMonitor and CollapseMonitor write their values into History; the epoch-callback
base they share with EmbeddingEvaluation (tfcontrast.evaluation.callbacks.EpochMetrics)."""

import keras
import numpy as np
import pytest

from tfcontrast.evaluation import EmbeddingEvaluation
from tfcontrast.evaluation.callbacks import EpochMetrics
from tfcontrast.models.callbacks import CollapseMonitor, KNNMonitor, collapse_statistics


def test_collapse_statistics_detect_collapse(rng):
    healthy = rng.normal(size=(500, 16))
    std, rank = collapse_statistics(healthy)
    assert abs(std - 1 / np.sqrt(16)) < 0.02 and rank > 14
    collapsed = np.ones((500, 16)) + 1e-9 * rng.normal(size=(500, 16))
    std, rank = collapse_statistics(collapsed)
    assert std < 1e-6
    line = np.outer(rng.normal(size=500), rng.normal(size=16))
    assert collapse_statistics(line)[1] < 1.01


def test_monitors_log_into_history(rng):
    x = rng.normal(size=(64, 4)).astype("float32")
    y = (x[:, 0] > 0).astype("int32")
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(8)])
    model.compile(optimizer="sgd", loss="mse")
    history = model.fit(
        x,
        np.zeros((64, 8), "float32"),
        epochs=3,
        verbose=0,
        callbacks=[
            knn := KNNMonitor(x[:48], y[:48], x[48:], y[48:], k=5, every=2),
            collapse := CollapseMonitor(x),
        ],
    )
    assert len(history.history["embedding_std"]) == 3
    assert len(history.history["effective_rank"]) == 3
    # every=2 over 3 epochs: evaluated at epoch 2 and at the last epoch.
    assert len(history.history["knn_top1"]) == 2
    assert all(0.0 <= a <= 1.0 for a in history.history["knn_top1"])
    # The same values by real epoch number (from 1), for plots.
    assert list(knn.values["knn_top1"].values()) == history.history["knn_top1"]
    assert sorted(knn.values["knn_top1"]) == [2, 3]
    assert sorted(collapse.values["effective_rank"]) == [1, 2, 3]


class _Count(EpochMetrics):
    def compute(self, epoch):
        return {"epoch": epoch + 1, "twice": 2 * (epoch + 1)}


def _run(callback, epochs, **params):
    callback.set_params({"epochs": epochs, **params})
    logged = []
    for epoch in range(epochs):
        logs = {}
        callback.on_epoch_end(epoch, logs)
        logged.append(logs)
    return logged


def test_epoch_metrics_schedule_logs_and_values():
    plain = _Count(every=2, prefix="p_", names=("epoch", "unseen"))
    assert plain.values == {"p_epoch": {}, "p_unseen": {}}
    logged = _run(plain, 5)
    assert logged == [
        {},
        {"p_epoch": 2.0, "p_twice": 4.0},
        {},
        {"p_epoch": 4.0, "p_twice": 8.0},
        {},
    ]
    assert plain.values == {
        "p_epoch": {2: 2.0, 4: 4.0},
        "p_unseen": {},
        "p_twice": {2: 4.0, 4: 8.0},
    }
    assert plain.last_results == {"epoch": 4, "twice": 8}
    last = _Count(every=2, at_last_epoch=True)
    assert [bool(logs) for logs in _run(last, 5)] == [False, True, False, True, True]
    # Without `fit`'s params (a direct call) the last epoch is unknown: the period alone.
    assert not _Count(every=2, at_last_epoch=True).due(4)


def test_the_callbacks_share_the_base(rng):
    x = rng.normal(size=(8, 3)).astype("float32")
    for callback in (
        EmbeddingEvaluation(x, np.arange(8) % 2),
        KNNMonitor(x, np.arange(8) % 2, x, np.arange(8) % 2),
        CollapseMonitor(x),
    ):
        assert isinstance(callback, EpochMetrics)
        assert type(callback).on_epoch_end is EpochMetrics.on_epoch_end


def test_monitor_every_accepts_whole_numbers(rng):
    x = rng.normal(size=(8, 3)).astype("float32")
    assert CollapseMonitor(x, every=np.int64(3)).every == 3
    assert CollapseMonitor(x, every=2.0).every == 2
    for bad in (0, 2.5, True, "2"):
        with pytest.raises(ValueError, match="CollapseMonitor: `every` must be an int >= 1"):
            CollapseMonitor(x, every=bad)
    with pytest.raises(ValueError, match="KNNMonitor: `every`"):
        KNNMonitor(x, np.zeros(8), x, np.zeros(8), every=0)
