"""Keras callbacks that measure the embedding during `fit`.

`EpochMetrics` is the base of every tfcontrast callback that computes numbers every few
epochs and logs them (`EmbeddingEvaluation` here, `KNNMonitor` and `CollapseMonitor` in
`tfcontrast.models.callbacks`): it decides when, writes the epoch `logs` and keeps the
values by epoch; a subclass says what, in `compute`.
"""

from __future__ import annotations

import keras
import numpy as np

from tfcontrast import _checks
from tfcontrast.evaluation._common import to_numpy
from tfcontrast.evaluation.evaluate import DEFAULT_METRICS, evaluate_embeddings


class EpochMetrics(keras.callbacks.Callback):
    """Base of the callbacks that compute metrics every `every` epochs and log them.

    The metrics go into the epoch `logs` under `prefix + name`, so they land in the
    `History` returned by `fit` and in every callback listed after this one
    (`TensorBoard`, `CSVLogger`, `ModelCheckpoint(monitor=...)`, `EarlyStopping`). They
    are also kept by real epoch number (from 1), `values[prefix + name][epoch]`, for
    plots, and the last ones in `last_results` (without the prefix). Epochs that are
    skipped log nothing.

    A subclass implements `compute(epoch) -> dict[str, float]` and checks `every` (an
    int >= 1).

    Args:
        every: compute after epochs `every, 2 * every, ...`.
        prefix: prepended to every metric name in `logs` and `values`.
        at_last_epoch: also compute after the last epoch of `fit` when it is not one of
            those.
        names: metric names known in advance: `values` starts with an empty record for
            each.
        verbose: print the metrics when they are computed.
    """

    def __init__(
        self,
        every: int = 1,
        prefix: str = "",
        at_last_epoch: bool = False,
        names=(),
        verbose: int = 0,
    ):
        super().__init__()
        self.every = every
        self.prefix = prefix
        self.at_last_epoch = bool(at_last_epoch)
        self.verbose = verbose
        self.values: dict[str, dict[int, float]] = {prefix + name: {} for name in names}
        self.last_results: dict[str, float] = {}

    def due(self, epoch: int) -> bool:
        """Whether the metrics are computed after `epoch` (counted from 0)."""
        if (epoch + 1) % self.every == 0:
            return True
        last = self.params.get("epochs") if self.at_last_epoch and self.params else None
        return last is not None and epoch + 1 == last

    def compute(self, epoch: int) -> dict[str, float]:
        """The metrics after `epoch` (counted from 0), without the prefix."""
        raise NotImplementedError

    def on_epoch_end(self, epoch, logs=None):
        if not self.due(epoch):
            return
        results = self.compute(epoch)
        self.last_results = results
        for name, value in results.items():
            key = self.prefix + name
            self.values.setdefault(key, {})[epoch + 1] = float(value)
            if logs is not None:
                logs[key] = float(value)
        if self.verbose:
            text = " - ".join(f"{self.prefix}{k}: {v:.4f}" for k, v in results.items())
            print(f"\nEpoch {epoch + 1}: {text}")


class EmbeddingEvaluation(EpochMetrics):
    """Computes `evaluate_embeddings` every `every_n_epochs` epochs and logs the results.

    The metrics are written into the epoch `logs` under `prefix + name` (e.g.
    `val_knn_accuracy`, `val_map_at_r`), so they land in the `History` object returned
    by `fit` and in every callback that runs after this one (`TensorBoard`, `CSVLogger`,
    `ModelCheckpoint(monitor="val_knn_accuracy", mode="max")`, `EarlyStopping`): list
    this callback *before* those. Epochs that are skipped log nothing (see
    `EpochMetrics`, which also keeps them in `values` by epoch).

    Args:
        x: inputs of the evaluation set (a NumPy array or anything `embedding`
            accepts).
        y: `(N,)` labels of `x`.
        train_x: optional inputs of a reference set for kNN / linear probe (otherwise
            kNN is leave-one-out on `x`).
        train_y: labels of `train_x`.
        embedding: how to embed inputs: `None` uses the model being trained
            (`model.predict`), a `keras.Model` (e.g. the backbone, which shares weights
            with the trained model) is called through `predict`, any other callable
            is called as `embedding(inputs)`.
        every_n_epochs: evaluate after epochs `n, 2n, ...` (and never in between).
        prefix: prepended to every metric name in `logs`.
        batch_size: batch size of `predict`.
        verbose: print the metrics when they are computed.
        **evaluate_kwargs: forwarded to `evaluate_embeddings` (`metrics`, `knn_k`,
            `recall_ks`, ...). The default metric set is kNN, retrieval, clustering
            and geometry.

    Example:

    ```python
    callback = EmbeddingEvaluation(x_val, y_val, embedding=backbone, every_n_epochs=5,
                                   knn_k=20)
    history = model.fit(x_train, epochs=50,
                        callbacks=[callback, keras.callbacks.TensorBoard("logs")])
    history.history["val_knn_accuracy"]
    ```
    """

    def __init__(
        self,
        x,
        y,
        train_x=None,
        train_y=None,
        embedding=None,
        every_n_epochs: int = 1,
        prefix: str = "val_",
        batch_size: int = 256,
        verbose: int = 0,
        **evaluate_kwargs,
    ):
        _checks.integer("every_n_epochs", every_n_epochs, "EmbeddingEvaluation", numpy_ints=False)
        super().__init__(every=every_n_epochs, prefix=prefix, verbose=verbose)
        if (train_x is None) != (train_y is None):
            raise ValueError("EmbeddingEvaluation: pass both `train_x` and `train_y`.")
        if embedding is not None and not callable(embedding):
            raise ValueError(
                "EmbeddingEvaluation: `embedding` must be a Keras model or a callable."
            )
        evaluate_kwargs.setdefault("metrics", DEFAULT_METRICS)
        self.x, self.y = x, y
        self.train_x, self.train_y = train_x, train_y
        self.embedding = embedding
        self.every_n_epochs = every_n_epochs
        self.batch_size = batch_size
        self.evaluate_kwargs = evaluate_kwargs

    def _embed(self, inputs) -> np.ndarray:
        fn = self.embedding if self.embedding is not None else self.model
        if isinstance(fn, keras.Model):
            out = fn.predict(inputs, batch_size=self.batch_size, verbose=0)
        else:
            out = fn(inputs)
        out = to_numpy(out, "embedding output")
        if out.ndim != 2:
            raise ValueError(
                "EmbeddingEvaluation: the embedding must map inputs to (N, D); received "
                f"shape {out.shape}. Pass `embedding=` the model that returns the embedding."
            )
        return out

    def evaluate(self) -> dict[str, float]:
        """Embeds the data and returns the metrics (without the prefix)."""
        emb = self._embed(self.x)
        train_emb = self._embed(self.train_x) if self.train_x is not None else None
        return evaluate_embeddings(
            emb,
            self.y,
            train_embeddings=train_emb,
            train_labels=self.train_y,
            **self.evaluate_kwargs,
        )

    def compute(self, epoch: int) -> dict[str, float]:
        return self.evaluate()
