"""Base classes shared by every tfcontrast loss.

Two bases cover all losses:

- `ContrastiveLossBase` handles what every loss needs: computation in float32 (also
  under `mixed_float16` / `mixed_bfloat16`), validation of labels and embeddings with
  errors that name the argument, `y_true=None` for losses that ignore labels, and
  Keras' reduction of the per-example values that `call` returns.
- `MetricLoss` is the base of supervised metric losses (labels `(B,)`, embeddings
  `(B, D)`). It splits `call` into *anchors* (this batch) and *references* (what the
  anchors are compared with) and hands both to `compute`. References are the batch
  itself by default, the global batch under `tf.distribute`, or the batch plus a memory
  (`CrossBatchMemory`). A new metric loss implements `compute` only.
"""

from __future__ import annotations

import keras
import numpy as np
from keras import ops

from tfcontrast import _keras_compat
from tfcontrast import distances as distances_lib


def _is_integer_dtype(dtype) -> bool:
    name = keras.backend.standardize_dtype(dtype)
    return name.startswith("int") or name.startswith("uint")


class ContrastiveLossBase(keras.losses.Loss):
    """Base of all tfcontrast losses.

    Subclasses set two class attributes and implement `call(y_true, y_pred)`, returning
    per-example values of shape `(B,)`:

    - `labels`: `"required"` (supervised), `"optional"` (used when given, e.g. SupCon
      with several views) or `"ignored"` (self-supervised multi-view losses: `y_true`
      may be `None`, both when called directly and through `fit` without labels).
    - `embedding_ranks`: the ranks `y_pred` may have, `(2,)` for `(B, D)`, `(3,)` for
      views `(B, V, D)`.

    Labels reach `call` as an int32 tensor of shape `(B,)` (or `None`); `y_pred` reaches
    it in float32 whatever the mixed-precision policy.
    """

    labels = "required"
    embedding_ranks: tuple[int, ...] = (2,)
    # Whether `y_true` may also be multi-hot `(B, C)` (multi-label data).
    multi_label = False

    def __init__(self, name=None, reduction="sum_over_batch_size", dtype=None):
        # Losses always compute in float32: logits, log-softmax and exponentials of
        # similarities overflow in float16 and lose precision in bfloat16.
        super().__init__(name=name, reduction=reduction, dtype=dtype or "float32")

    # -- validation ----------------------------------------------------------------
    def _embeddings(self, y_pred):
        y_pred = ops.convert_to_tensor(y_pred)
        rank = len(y_pred.shape)
        if rank not in self.embedding_ranks:
            expected = " or ".join(
                {2: "(batch, dim)", 3: "(batch, views, dim)"}.get(r, f"rank {r}")
                for r in self.embedding_ranks
            )
            raise ValueError(
                f"{type(self).__name__}: `y_pred` must have shape {expected}; "
                f"received shape {tuple(y_pred.shape)}."
            )
        if rank == 3 and y_pred.shape[1] is not None and y_pred.shape[1] < 2:
            raise ValueError(
                f"{type(self).__name__}: `y_pred` must hold at least 2 views on axis 1; "
                f"received shape {tuple(y_pred.shape)}."
            )
        return ops.cast(y_pred, self.dtype)

    def _labels(self, y_true, y_pred):
        if y_true is None or self.labels == "ignored":
            if self.labels == "required":
                raise ValueError(
                    f"{type(self).__name__}: `y_true` (integer class labels of shape "
                    "(batch,)) is required; received None."
                )
            return None
        multi_hot = self.multi_label and len(getattr(y_true, "shape", ())) == 2
        multi_hot = multi_hot and y_true.shape[-1] != 1
        if multi_hot and isinstance(y_true, np.ndarray) and not np.isin(y_true, (0, 1)).all():
            raise ValueError(
                f"{type(self).__name__}: multi-hot `y_true` of shape (batch, classes) must "
                "hold 0 or 1."
            )
        y_true = ops.convert_to_tensor(y_true)
        if not _is_integer_dtype(y_true.dtype):
            raise ValueError(
                f"{type(self).__name__}: `y_true` must hold integer class labels; received "
                f"dtype {keras.backend.standardize_dtype(y_true.dtype)}. Cast them, e.g. "
                "`labels.astype('int32')`."
            )
        if len(y_true.shape) == 2 and y_true.shape[-1] == 1:
            y_true = ops.squeeze(y_true, axis=-1)
        if len(y_true.shape) != 1 and not multi_hot:
            also = " or (batch, classes) multi-hot" if self.multi_label else ""
            raise ValueError(
                f"{type(self).__name__}: `y_true` must have shape (batch,){also}; received "
                f"shape {tuple(y_true.shape)}."
            )
        batch_t, batch_p = y_true.shape[0], y_pred.shape[0]
        if batch_t is not None and batch_p is not None and batch_t != batch_p:
            raise ValueError(
                f"{type(self).__name__}: `y_true` and `y_pred` must have the same batch "
                f"size; received {batch_t} labels for {batch_p} embeddings."
            )
        return ops.cast(y_true, "int32")

    # -- Keras entry point ---------------------------------------------------------
    def __call__(self, y_true, y_pred, sample_weight=None):
        with keras.name_scope(self.name):
            y_pred = self._embeddings(y_pred)
            y_true = self._labels(y_true, y_pred)
            losses = self.call(y_true, y_pred)
            return _keras_compat.reduce_weighted_values(
                losses,
                sample_weight=sample_weight,
                reduction=self.reduction,
                dtype=self.dtype,
            )

    def get_config(self):
        config = super().get_config()
        config.pop("dtype", None)
        return config


class MetricLoss(ContrastiveLossBase):
    """Base of supervised metric losses: anchors compared with references.

    Subclasses implement `compute`. `distance` is any name accepted by
    `tfcontrast.distances.get` or a `Distance` object.
    """

    labels = "required"
    embedding_ranks = (2,)

    def __init__(self, distance="cosine", name=None, reduction="sum_over_batch_size", dtype=None):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        self.distance = distances_lib.get(distance)

    def call(self, y_true, y_pred):
        ref_labels, ref_embeddings, offset = self.references(y_true, y_pred)
        per_anchor = self.compute(y_true, y_pred, ref_labels, ref_embeddings, offset)
        # A NaN or inf embedding makes its own loss NaN: mining can pass over it and leave
        # a finite loss with NaN gradients, which `TerminateOnNaN` cannot see.
        return per_anchor + 0.0 * ops.cast(ops.sum(y_pred, axis=-1), per_anchor.dtype)

    def references(self, labels, embeddings):
        """Returns `(ref_labels, ref_embeddings, offset)` for this batch.

        `offset` is the row of the references where this batch's first anchor sits, so
        that anchor `i` is reference `offset + i`.
        """
        from tfcontrast import distribute

        return distribute.gather_references(labels, embeddings)

    def compute(self, labels, embeddings, ref_labels, ref_embeddings, offset):
        """Per-anchor loss `(B,)` of anchors `embeddings` against `ref_embeddings`.

        Args:
            labels: int32 `(B,)` anchor labels.
            embeddings: float32 `(B, D)` anchors.
            ref_labels: int32 `(M,)` reference labels.
            ref_embeddings: float32 `(M, D)` references.
            offset: anchor `i` is reference `offset + i` (not its own positive).
        """
        raise NotImplementedError

    def get_config(self):
        config = super().get_config()
        config["distance"] = distances_lib.serialize(self.distance)
        return config
