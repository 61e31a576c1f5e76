"""KNNMonitor and CollapseMonitor write their values into History."""

import keras
import numpy as np

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
