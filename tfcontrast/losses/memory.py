"""Cross-batch memory (XBM): past embeddings as extra references for a metric loss."""

from __future__ import annotations

import keras
from keras import ops

from tfcontrast import _checks
from tfcontrast.layers.queue import MemoryQueue
from tfcontrast.losses.base import MetricLoss


@keras.saving.register_keras_serializable(package="tfcontrast")
class CrossBatchMemory(MetricLoss):
    """Cross-batch memory for any metric loss (Wang et al., "Cross-Batch Memory for
    Embedding Learning", CVPR 2020).

    Keeps the embeddings and labels of the last `memory_size` examples in a ring buffer
    (a `tfcontrast.layers.MemoryQueue`, `loss.memory_queue`). Each call compares the batch's anchors with the batch
    (the global batch under `tf.distribute`) *and* the memory:

        L_i = loss.compute(labels, x, [refs; memory_labels], [refs; memory_x], offset)_i

    then enqueues the batch's references (gradients stopped: the memory holds constants,
    as in the paper), overwriting the oldest entries once the memory is full. Memory
    entries of an anchor's class are positives, the others negatives, exactly as batch
    references are.

    Only filled slots are used. Slots fill in order `0, 1, ...`, so the valid memory is
    the prefix `[:count]` (never-filled slots are left out, neither positives nor
    negatives). Until the memory is full that prefix grows from step to step: a dynamic
    shape bounded by `memory_size`, which `tf.function` and XLA (`jit_compile=True`)
    both compile.

    Notes:
        - In a `ContrastiveModel` (`algorithm=Metric(CrossBatchMemory(...))`) the memory
          is the model's state, like MoCo's queue: created with the projection's width,
          saved and restored with the model, carried by `fit` on every backend, and
          written in training steps only (`evaluate` and validation read it).
        - Used as the loss of a plain `compile`, the variables are created on the first
          call, or in `__init__` when `embedding_dim` is given (do that inside
          `strategy.scope()` under `tf.distribute`); they belong to the loss (not saved
          with the model, not updated by JAX's `fit`), and since a loss cannot tell
          training from evaluation, evaluation batches are enqueued too unless
          `update_memory` is set to False.
        - The paper starts using the memory after a warm-up of plain batch training;
          train with `loss` first and switch to `CrossBatchMemory(loss)` to do that.

    Args:
        loss: the wrapped `tfcontrast.losses.MetricLoss` (e.g. `ContrastiveLoss`,
            `TripletLoss`, `MultiSimilarityLoss`).
        memory_size: number of past embeddings kept (> 0).
        embedding_dim: optional embedding size, to create the memory at construction.

    Example:

    ```python
    loss = tfcontrast.losses.CrossBatchMemory(
        tfcontrast.losses.ContrastiveLoss(margin=0.5), memory_size=4096)
    model.compile(optimizer="adam", loss=loss)
    model.fit(images, integer_labels, batch_size=64)
    ```
    """

    labels = "required"
    embedding_ranks = (2,)

    def __init__(
        self,
        loss,
        memory_size: int = 1024,
        embedding_dim: int | None = None,
        name: str = "cross_batch_memory",
        **kwargs,
    ):
        owner = type(self).__name__
        if isinstance(loss, dict):
            loss = keras.saving.deserialize_keras_object(loss)
        if not isinstance(loss, MetricLoss) or isinstance(loss, CrossBatchMemory):
            raise ValueError(
                f"{owner}: `loss` must be a tfcontrast.losses.MetricLoss (a supervised "
                f"metric loss such as ContrastiveLoss or TripletLoss); received {loss!r}."
            )
        kwargs.pop("distance", None)
        super().__init__(distance=loss.distance, name=name, **kwargs)
        self.loss = loss
        self.memory_size = _checks.integer("memory_size", memory_size, owner, whole_floats=True)
        self.embedding_dim = None
        self.memory_queue = None
        # Whether a call writes its batch into the memory. `ContrastiveModel` (the
        # `metric` algorithm) sets it from `training`, so evaluation leaves the memory alone.
        self.update_memory = True
        if embedding_dim is not None:
            self._build(_checks.integer("embedding_dim", embedding_dim, owner, whole_floats=True))

    # -- ring buffer ------------------------------------------------------------------
    def _build(self, embedding_dim: int):
        self.embedding_dim = int(embedding_dim)
        # Every replica computes the same (gathered) update, so one copy is enough.
        self.memory_queue = MemoryQueue(
            self.memory_size,
            self.embedding_dim,
            with_labels=True,
            aggregation="only_first_replica",
            name=f"{self.name}_memory",
        )

    # The queue's variables under the names this loss has always shown (None before the
    # memory is built): stored embeddings `(memory_size, D)` and labels, the number of
    # filled slots (the prefix `[:count]`) and the slot written next.
    memory_embeddings = property(lambda self: self._queue_variable("buffer"))
    memory_labels = property(lambda self: self._queue_variable("labels"))
    memory_count = property(lambda self: self._queue_variable("filled"))
    memory_pointer = property(lambda self: self._queue_variable("pointer"))

    def _queue_variable(self, name):
        return None if self.memory_queue is None else getattr(self.memory_queue, name)

    def memory(self):
        """The valid memory: `(labels (count,), embeddings (count, D))`."""
        if self.memory_queue is None:
            return None, None
        embeddings, labels = self.memory_queue.filled_rows()
        return labels, embeddings

    def enqueue(self, labels, embeddings):
        """Writes a batch into the memory, oldest entries first out."""
        self.memory_queue.enqueue(embeddings, ops.cast(labels, "int32"))

    def reset(self):
        """Empties the memory."""
        if self.memory_queue is not None:
            self.memory_queue.reset()

    # -- loss -------------------------------------------------------------------------
    def call(self, y_true, y_pred):
        dim = y_pred.shape[-1]
        if self.memory_queue is None:
            if dim is None:
                raise ValueError(
                    f"{type(self).__name__}: the embedding size (last axis of `y_pred`) "
                    "must be known, or pass `embedding_dim`."
                )
            self._build(dim)
        elif dim is not None and dim != self.embedding_dim:
            raise ValueError(
                f"{type(self).__name__}: `y_pred` must have {self.embedding_dim} features "
                f"like the memory; received shape {tuple(y_pred.shape)}."
            )
        ref_labels, ref_embeddings, offset = self.references(y_true, y_pred)
        memory_labels, memory_embeddings = self.memory()
        losses = self.compute(
            y_true,
            y_pred,
            ops.concatenate([ref_labels, memory_labels], axis=0),
            ops.concatenate([ref_embeddings, memory_embeddings], axis=0),
            offset,
        )
        if self.update_memory:
            self.enqueue(ref_labels, ref_embeddings)
        return losses

    def compute(self, labels, embeddings, ref_labels, ref_embeddings, offset):
        return self.loss.compute(labels, embeddings, ref_labels, ref_embeddings, offset)

    def get_config(self):
        config = super().get_config()
        config.pop("distance", None)
        config.update(
            loss=keras.saving.serialize_keras_object(self.loss),
            memory_size=self.memory_size,
            embedding_dim=self.embedding_dim,
        )
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["loss"] = keras.saving.deserialize_keras_object(config["loss"])
        return cls(**config)
