"""Keras callback that evaluates the embedding during `fit`."""

from __future__ import annotations

import keras
import numpy as np

from tfcontrast import _checks
from tfcontrast.evaluation._common import to_numpy
from tfcontrast.evaluation.evaluate import DEFAULT_METRICS, evaluate_embeddings


class EmbeddingEvaluation(keras.callbacks.Callback):
    """Computes `evaluate_embeddings` every `every_n_epochs` epochs and logs the results.

    The metrics are written into the epoch `logs` under `prefix + name` (e.g.
    `val_knn_accuracy`, `val_map_at_r`), so they land in the `History` object returned
    by `fit` and in every callback that runs after this one (`TensorBoard`, `CSVLogger`,
    `ModelCheckpoint(monitor="val_knn_accuracy", mode="max")`, `EarlyStopping`): list
    this callback *before* those. Epochs that are skipped log nothing.

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
        super().__init__()
        _checks.integer("every_n_epochs", every_n_epochs, "EmbeddingEvaluation", numpy_ints=False)
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
        self.prefix = prefix
        self.batch_size = batch_size
        self.verbose = verbose
        self.evaluate_kwargs = evaluate_kwargs
        self.last_results: dict[str, float] = {}

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

    def on_epoch_end(self, epoch, logs=None):
        if (epoch + 1) % self.every_n_epochs != 0:
            return
        results = self.evaluate()
        self.last_results = results
        if logs is not None:
            for name, value in results.items():
                logs[self.prefix + name] = float(value)
        if self.verbose:
            text = " - ".join(f"{self.prefix}{k}: {v:.4f}" for k, v in results.items())
            print(f"\nEpoch {epoch + 1}: {text}")
