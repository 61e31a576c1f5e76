"""A fixed-size FIFO memory of past embeddings (and labels), updated in-graph.

`MemoryQueue` is the ring buffer behind MoCo's queue of negatives, `InfoNCELoss(queue=...)`,
NNCLR's support set and cross-batch memory (`tfcontrast.losses.CrossBatchMemory`). It keeps its state in non-trainable `keras.Variable`s and
updates them with `assign`, so an `enqueue` inside `compute_loss`, a loss or a
`jit_compile=True` train step changes the queue in place.
"""

from __future__ import annotations

import keras
from keras import ops

from tfcontrast import _checks


@keras.saving.register_keras_serializable(package="tfcontrast")
class MemoryQueue(keras.layers.Layer):
    """Fixed-size ring buffer of embeddings (and optional integer labels).

    State (all non-trainable variables):

    - `buffer`: float32 `(size, dim)` stored rows.
    - `labels`: int32 `(size,)` stored labels (only with `with_labels=True`; -1 where empty).
    - `pointer`: int32 scalar, the slot the next row is written to.
    - `filled`: int32 scalar, how many slots hold data (`<= size`).

    The queue fills slots `0, 1, ...` in order and then wraps around, overwriting the
    oldest rows, so the valid rows are always the first `filled` slots. A batch larger
    than the space left before the end wraps around with a modular scatter; a batch
    larger than `size` keeps only its last `size` rows. Rows are stored with
    `stop_gradient`.

    API:

    - `enqueue(x, labels=None)`: writes `x` `(n, dim)` (and `labels` `(n,)`).
    - `values()`: `(buffer, labels_or_None, valid)` where `valid` is a bool `(size,)`
      mask of the slots holding data.
    - `valid_mask()`: the `valid` mask alone; `reset()`: empties the queue.
    - `filled_rows()`: `(rows, labels_or_None)` of the filled slots only, `[:filled]` (a
      shape that grows until the queue is full).

    Which backend tracks the updates: on TensorFlow an `enqueue` inside a train step
    updates the queue wherever the layer lives. On JAX, variables are only updated if the
    model owns them: attach the queue to the model (`model.queue = queue`), which also
    saves it in the model's weights.

    Args:
        size: number of rows the queue holds (> 0).
        dim: embedding dimension. If `None`, the variables are created by `build(dim)`
            or by the first `enqueue` (do that eagerly, outside a compiled function).
        with_labels: whether to store integer labels next to the embeddings.
        aggregation: the variables' aggregation under `tf.distribute` (`"none"`: each
            replica writes its own copy; `"only_first_replica"`: replica 0's write is
            copied to all, for owners whose replicas all enqueue the same gathered
            batch, as `CrossBatchMemory`).

    Example:

    ```python
    queue = tfcontrast.layers.MemoryQueue(size=4096, dim=128)
    queue.enqueue(keys)                      # keys: (batch, 128)
    negatives, _, valid = queue.values()     # (4096, 128), None, (4096,) bool
    loss = tfcontrast.losses.InfoNCELoss(temperature=0.2, queue=queue)
    ```
    """

    def __init__(
        self,
        size: int,
        dim: int | None = None,
        with_labels: bool = False,
        *,
        aggregation: str = "none",
        **kwargs,
    ):
        kwargs.setdefault("trainable", False)
        super().__init__(**kwargs)
        self.size = _checks.integer("size", size, "MemoryQueue", numpy_ints=False)
        self.dim = (
            None if dim is None else _checks.integer("dim", dim, "MemoryQueue", numpy_ints=False)
        )
        self.with_labels = bool(with_labels)
        self.aggregation = _checks.choice(
            "aggregation", aggregation, ("none", "only_first_replica"), "MemoryQueue"
        )
        self.labels = None
        if dim is not None:
            self.build((None, dim))

    def build(self, input_shape=None):
        if isinstance(input_shape, int):
            dim = input_shape
        elif input_shape is None:
            dim = self.dim
        else:
            dim = input_shape[-1]
        if dim is None:
            raise ValueError("MemoryQueue: `dim` is unknown; pass `dim=` or call `build(dim)`.")
        if self.dim is not None and dim != self.dim:
            raise ValueError(f"MemoryQueue: `dim` is {self.dim}; received rows of dimension {dim}.")
        self.dim = int(dim)
        common = dict(trainable=False, aggregation=self.aggregation)
        self.buffer = self.add_weight(
            shape=(self.size, self.dim),
            initializer="zeros",
            dtype="float32",
            name="buffer",
            **common,
        )
        if self.with_labels:
            self.labels = self.add_weight(
                shape=(self.size,),
                initializer=keras.initializers.Constant(-1),
                dtype="int32",
                name="labels",
                **common,
            )
        self.pointer = self.add_weight(
            shape=(), initializer="zeros", dtype="int32", name="pointer", **common
        )
        self.filled = self.add_weight(
            shape=(), initializer="zeros", dtype="int32", name="filled", **common
        )
        self.built = True

    def call(self, inputs):
        """Returns the stored rows `(size, dim)`; the layer is not meant for graphs."""
        return ops.convert_to_tensor(self.buffer)

    def compute_output_shape(self, input_shape):
        return (self.size, self.dim)

    # -- state -------------------------------------------------------------------------
    def enqueue(self, x, labels=None):
        """Writes the rows `x` `(n, dim)` (and `labels` `(n,)`) over the oldest slots."""
        x = ops.convert_to_tensor(x)
        if len(x.shape) != 2:
            raise ValueError(
                f"MemoryQueue.enqueue: `x` must have shape (batch, dim); received {tuple(x.shape)}."
            )
        if not self.built:
            self.build((None, x.shape[-1]))
        if x.shape[-1] is not None and x.shape[-1] != self.dim:
            raise ValueError(
                f"MemoryQueue.enqueue: `x` must have dimension {self.dim}; received shape "
                f"{tuple(x.shape)}."
            )
        if self.with_labels and labels is None:
            raise ValueError("MemoryQueue.enqueue: `labels` are required (with_labels=True).")
        x = ops.cast(ops.stop_gradient(x), "float32")

        n = x.shape[0]
        if n is None:
            n = ops.cast(ops.shape(x)[0], "int32")
            kept = ops.minimum(n, self.size)
        else:
            kept = min(n, self.size)
        # Rows that would be overwritten within this same batch are dropped first, so
        # the scatter below never writes one slot twice.
        start = n - kept
        x = x[start:]
        slots = ops.mod(self.pointer + start + ops.arange(kept, dtype="int32"), self.size)
        slots = ops.expand_dims(slots, -1)
        self.buffer.assign(ops.scatter_update(self.buffer, slots, x))
        if self.with_labels:
            labels = ops.cast(ops.reshape(ops.convert_to_tensor(labels), (-1,)), "int32")
            self.labels.assign(ops.scatter_update(self.labels, slots, labels[start:]))
        self.pointer.assign(ops.mod(self.pointer + n, self.size))
        self.filled.assign(ops.minimum(self.filled + n, self.size))

    def valid_mask(self):
        """Bool `(size,)`: which slots hold data."""
        return ops.arange(self.size, dtype="int32") < self.filled

    def values(self):
        """Returns `(buffer, labels, valid)`: rows, labels (or None) and the valid mask."""
        labels = ops.convert_to_tensor(self.labels) if self.with_labels else None
        return ops.convert_to_tensor(self.buffer), labels, self.valid_mask()

    def filled_rows(self):
        """Returns `(rows, labels)` of the filled slots `[:filled]` (labels None without
        `with_labels`). Until the queue is full the shape changes from call to call: a
        dynamic shape bounded by `size`, which `tf.function` and XLA both compile."""
        count = self.filled.value
        labels = self.labels.value[:count] if self.with_labels else None
        return self.buffer.value[:count], labels

    def reset(self):
        """Empties the queue."""
        # From shapes, not `zeros_like(variable)`: JAX >= 0.10 rejects Variables there.
        self.buffer.assign(ops.zeros(self.buffer.shape, self.buffer.dtype))
        if self.with_labels:
            self.labels.assign(ops.full(self.labels.shape, -1, self.labels.dtype))
        self.pointer.assign(0)
        self.filled.assign(0)

    def get_config(self):
        config = super().get_config()
        config.update({"size": self.size, "dim": self.dim, "with_labels": self.with_labels})
        if self.aggregation != "none":  # saved queues keep the config they always had
            config["aggregation"] = self.aggregation
        return config
