import ast
import inspect
import os

import keras
import numpy as np
import pytest
from matplotlib.image import imread

from tfcontrast import evaluation as ev
from tfcontrast.evaluation import plots


def _data(rng, n=48, classes=3, dim=6):
    y = np.arange(n) % classes
    x = (np.eye(classes, dim)[y] * 3.0 + 0.5 * rng.standard_normal((n, dim))).astype("float32")
    return x, y


def _tiny_model(dim):
    inputs = keras.Input((dim,))
    emb = keras.layers.Dense(4, name="embed")(inputs)
    out = keras.layers.Dense(3, activation="softmax")(emb)
    return keras.Model(inputs, out), keras.Model(inputs, emb)


# ----------------------------------------------------------------------------- callback
def test_callback_logs_into_history(rng):
    x, y = _data(rng)
    model, backbone = _tiny_model(x.shape[1])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    every = ev.EmbeddingEvaluation(x, y, embedding=backbone, knn_k=5, metrics=("knn", "retrieval"))
    sparse = ev.EmbeddingEvaluation(
        x, y, train_x=x, train_y=y, every_n_epochs=2, prefix="probe_",
        metrics=("knn",), knn_k=3, knn_weighting="plain",
    )  # fmt: skip
    history = model.fit(x, y, epochs=3, batch_size=16, verbose=0, callbacks=[every, sparse])
    h = history.history
    assert len(h["val_knn_accuracy"]) == 3 and len(h["val_map_at_r"]) == 3
    assert len(h["probe_knn_accuracy"]) == 1  # epoch 2 only
    emb = backbone.predict(x, verbose=0)
    assert h["val_knn_accuracy"][-1] == pytest.approx(ev.knn_accuracy(emb, y, k=5))
    # Without `embedding`, the trained model's output is used (here the 3-way softmax).
    logs = {}
    sparse.on_epoch_end(1, logs)
    probs = model.predict(x, verbose=0)
    expected = ev.knn_accuracy(probs, y, probs, y, k=3, weighting="plain")
    assert logs == {"probe_knn_accuracy": pytest.approx(expected)}
    assert set(every.last_results) >= {"knn_accuracy", "precision_at_1", "map_at_r"}


def test_callback_with_callable_and_errors(rng):
    x, y = _data(rng)
    cb = ev.EmbeddingEvaluation(x, y, embedding=lambda inp: inp * 2.0, metrics=("geometry",))
    logs = {}
    cb.on_epoch_end(0, logs)
    assert logs["val_uniformity"] == pytest.approx(ev.uniformity(x))
    with pytest.raises(ValueError, match="every_n_epochs"):
        ev.EmbeddingEvaluation(x, y, every_n_epochs=0)
    with pytest.raises(ValueError, match="train_y"):
        ev.EmbeddingEvaluation(x, y, train_x=x)
    bad = ev.EmbeddingEvaluation(x, y, embedding=lambda inp: inp[:, None, :])
    with pytest.raises(ValueError, match=r"\(N, D\)"):
        bad.on_epoch_end(0, {})


# ----------------------------------------------------------------------------- plots
def _read_png(path):
    assert os.path.getsize(path) > 0
    img = imread(path)
    assert img.std() > 0.01, "plot is blank"
    return img


def test_plots_module_imports_matplotlib_lazily():
    tree = ast.parse(inspect.getsource(plots))
    top = [n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))]
    names = [a.name for n in top for a in n.names] + [
        n.module for n in top if isinstance(n, ast.ImportFrom) and n.module
    ]
    assert not any(name.startswith("matplotlib") for name in names)


@pytest.mark.parametrize("method", ["tsne", "pca"])
def test_projection_plot(rng, tmp_path, method):
    x, y = _data(rng, n=40)
    path = ev.projection_plot(
        x, y, str(tmp_path / "proj.png"), method=method, figsize=(4, 3), dpi=50
    )
    assert _read_png(path).shape[:2] == (150, 200)


def test_projection_auto_falls_back_without_umap(rng):
    x, _ = _data(rng, n=30)
    pts, used = ev.project_2d(x, method="auto")
    assert pts.shape == (30, 2)
    try:
        import umap  # noqa: F401

        assert used == "umap"
    except ImportError:
        assert used == "tsne"
    with pytest.raises(ValueError, match="method"):
        ev.project_2d(x, method="mds")


def test_neighbour_grid(rng, tmp_path):
    images = rng.integers(0, 256, (20, 8, 8)).astype("uint8")
    labels = np.arange(20) % 2
    neighbours = np.array([[1, 2, 3, 4], [5, 6, 7, 8], [0, 9, 10, 11]])
    path = ev.neighbour_grid(
        images[:3], images, neighbours, str(tmp_path / "nn.png"),
        query_labels=labels[:3], index_labels=labels, cell_size=1.0, dpi=40,
    )  # fmt: skip
    assert _read_png(path).shape[:2] == (3 * 40, 5 * 40)
    rgb = rng.random((5, 8, 8, 3))
    path = ev.neighbour_grid(rgb[:1], rgb, [[1, 2]], str(tmp_path / "rgb.png"), dpi=30)
    assert _read_png(path).shape[:2] == (30, 90)
    with pytest.raises(ValueError, match="neighbour_indices"):
        ev.neighbour_grid(images[:3], images, [[1, 2]], str(tmp_path / "bad.png"))
    with pytest.raises(ValueError, match="neighbour_indices"):
        ev.neighbour_grid(images[:1], images, [[25]], str(tmp_path / "bad.png"))


def test_training_curves(tmp_path):
    history = {"loss": [3.0, 2.0, 1.5], "val_loss": [3.1, 2.4, 2.0], "val_knn_accuracy": [0.2, 0.5]}
    path = ev.training_curves(history, str(tmp_path / "curves.png"), figsize=(6, 2), dpi=50)
    assert _read_png(path).shape[:2] == (100, 300)
    with pytest.raises(ValueError, match="keys"):
        ev.training_curves(history, str(tmp_path / "c.png"), keys=["accuracy"])
    with pytest.raises(ValueError, match="history"):
        ev.training_curves({}, str(tmp_path / "c.png"))


def test_training_curves_plot_sparse_metrics_at_their_epochs(tmp_path, monkeypatch):
    figures = []
    monkeypatch.setattr(plots, "_save", lambda fig, path, dpi: figures.append(fig) or path)
    history = {"loss": [3.0, 2.0, 1.5, 1.2, 1.1, 1.0], "knn_top1": {2: 0.5, 4: 0.7, 6: 0.8}}
    ev.training_curves(history, str(tmp_path / "curves.png"))
    loss_ax, knn_ax = figures[0].axes[:2]
    assert list(loss_ax.lines[0].get_xdata()) == [1, 2, 3, 4, 5, 6]
    assert list(knn_ax.lines[0].get_xdata()) == [2, 4, 6]
    assert list(knn_ax.lines[0].get_ydata()) == [0.5, 0.7, 0.8]


def test_export_projector(rng, tmp_path):
    x = rng.standard_normal((7, 3)).astype("float32")
    paths = ev.export_projector(x, str(tmp_path / "single"), labels=np.arange(7) % 2)
    back = np.loadtxt(paths["tensors"], delimiter="\t")
    np.testing.assert_allclose(back, x, rtol=1e-5)
    with open(paths["metadata"]) as f:
        lines = f.read().splitlines()
    assert lines == [str(i % 2) for i in range(7)]  # one column: no header
    with open(paths["config"]) as f:
        config = f.read()
    assert 'tensor_path: "tensors.tsv"' in config and 'metadata_path: "metadata.tsv"' in config
    assert config.count("{") == config.count("}") == 1
    paths = ev.export_projector(
        x,
        str(tmp_path / "multi"),
        labels=list("abcdefg"),
        metadata={"name": [f"n\t{i}" for i in range(7)]},
    )
    with open(paths["metadata"]) as f:
        rows = [line.split("\t") for line in f.read().splitlines()]
    assert rows[0] == ["label", "name"] and rows[1] == ["a", "n 0"] and len(rows) == 8
    only = ev.export_projector(x, str(tmp_path / "none"))
    assert "metadata" not in only
    with pytest.raises(ValueError, match="metadata"):
        ev.export_projector(x, str(tmp_path / "bad"), metadata={"name": [1, 2]})
