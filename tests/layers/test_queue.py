import keras
import numpy as np
import pytest
import tensorflow as tf

from tests.backend_utils import BACKEND, value_and_grad
from tfcontrast.layers import MemoryQueue


class RingBuffer:
    """Independent NumPy reference: one row at a time, oldest overwritten first."""

    def __init__(self, size, dim):
        self.buffer = np.zeros((size, dim), "float32")
        self.labels = np.full((size,), -1, "int32")
        self.pointer = 0
        self.filled = 0
        self.size = size

    def enqueue(self, x, labels):
        for row, label in zip(x, labels, strict=True):
            self.buffer[self.pointer] = row
            self.labels[self.pointer] = label
            self.pointer = (self.pointer + 1) % self.size
            self.filled = min(self.filled + 1, self.size)


SIZES = [3, 4, 5, 11, 2, 8, 1]


def _check(queue, ref):
    rows, labels, valid = queue.values()
    np.testing.assert_allclose(keras.ops.convert_to_numpy(rows), ref.buffer)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(labels), ref.labels)
    assert int(keras.ops.convert_to_numpy(queue.pointer)) == ref.pointer
    assert int(keras.ops.convert_to_numpy(queue.filled)) == ref.filled
    np.testing.assert_array_equal(
        keras.ops.convert_to_numpy(valid), np.arange(ref.size) < ref.filled
    )


def test_wraparound_matches_numpy_ring_buffer(rng):
    queue, ref = MemoryQueue(8, 3, with_labels=True), RingBuffer(8, 3)
    for n in SIZES:
        x = rng.normal(size=(n, 3)).astype("float32")
        y = rng.integers(0, 100, size=(n,)).astype("int32")
        queue.enqueue(x, y)
        ref.enqueue(x, y)
        _check(queue, ref)
    queue.reset()
    assert int(queue.filled.numpy()) == 0 and int(queue.pointer.numpy()) == 0
    assert not keras.ops.convert_to_numpy(queue.valid_mask()).any()


@pytest.mark.parametrize("jit", [False, True])
@pytest.mark.tf_only(reason="tf.function with an unknown batch dimension")
def test_enqueue_in_compiled_function_with_unknown_batch(rng, jit):
    queue, ref = MemoryQueue(8, 3, with_labels=True), RingBuffer(8, 3)

    @tf.function(
        jit_compile=jit,
        input_signature=[tf.TensorSpec((None, 3), tf.float32), tf.TensorSpec((None,), tf.int32)],
    )
    def step(x, y):
        queue.enqueue(x, y)
        return queue.filled

    for n in SIZES:
        x = rng.normal(size=(n, 3)).astype("float32")
        y = rng.integers(0, 100, size=(n,)).astype("int32")
        step(x, y)
        ref.enqueue(x, y)
        _check(queue, ref)


def test_lazy_build_and_no_labels(rng):
    queue = MemoryQueue(4)
    assert not queue.built
    x = rng.normal(size=(3, 5)).astype("float32")
    queue.enqueue(x)
    rows, labels, valid = queue.values()
    assert labels is None and rows.shape == (4, 5)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(rows)[:3], x)
    assert keras.ops.convert_to_numpy(valid).tolist() == [True, True, True, False]
    assert all(not v.trainable for v in queue.weights)


def test_enqueue_stops_gradient(rng):
    queue = MemoryQueue(4, 2)
    x = rng.normal(size=(2, 2)).astype("float32")

    def enqueue_and_read(x):
        queue.enqueue(x * 2.0)
        return queue.values()[0]

    if BACKEND == "jax":  # in-place assignment inside a traced function: stateless scope
        with keras.StatelessScope():
            _, (grad,) = value_and_grad(enqueue_and_read, x)
    else:
        _, (grad,) = value_and_grad(enqueue_and_read, x)
    np.testing.assert_array_equal(grad, 0.0)


def test_bad_arguments(rng):
    with pytest.raises(ValueError, match="size"):
        MemoryQueue(0, 3)
    with pytest.raises(ValueError, match="dim"):
        MemoryQueue(4, -1)
    queue = MemoryQueue(4, 3, with_labels=True)
    with pytest.raises(ValueError, match="dimension 3"):
        queue.enqueue(np.zeros((2, 5), "float32"), np.zeros(2, "int32"))
    with pytest.raises(ValueError, match="labels"):
        queue.enqueue(np.zeros((2, 3), "float32"))


def test_serialization_round_trip():
    queue = MemoryQueue(16, 4, with_labels=True, name="q")
    clone = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(queue))
    assert isinstance(clone, MemoryQueue)
    assert (clone.size, clone.dim, clone.with_labels, clone.name) == (16, 4, True, "q")
    assert clone.buffer.shape == (16, 4)


def test_filled_rows_are_the_prefix(rng):
    queue, ref = MemoryQueue(5, 3, with_labels=True), RingBuffer(5, 3)
    rows, labels = queue.filled_rows()
    assert tuple(rows.shape) == (0, 3) and tuple(labels.shape) == (0,)
    for n in (2, 2, 3):  # 2, 4, then full (wrapped)
        x = rng.normal(size=(n, 3)).astype("float32")
        y = rng.integers(0, 9, size=(n,)).astype("int32")
        queue.enqueue(x, y)
        ref.enqueue(x, y)
        rows, labels = queue.filled_rows()
        np.testing.assert_allclose(keras.ops.convert_to_numpy(rows), ref.buffer[: ref.filled])
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(labels), ref.labels[: ref.filled])
    assert MemoryQueue(4, 2).filled_rows()[1] is None


def test_aggregation_option_and_saved_config():
    # The default writes the config queues always had (saved models keep loading).
    assert "aggregation" not in MemoryQueue(4, 2).get_config()
    queue = MemoryQueue(4, 2, with_labels=True, aggregation="only_first_replica")
    assert {v.aggregation for v in queue.weights} == {"only_first_replica"}
    assert {v.aggregation for v in MemoryQueue(4, 2).weights} == {"none"}
    clone = MemoryQueue.from_config(queue.get_config())
    assert clone.aggregation == "only_first_replica"
    with pytest.raises(ValueError, match="MemoryQueue: `aggregation` must be one of"):
        MemoryQueue(4, 2, aggregation="mean")


def test_queue_updates_in_fit_with_jit_compile(rng):
    from tfcontrast.losses import InfoNCELoss

    inputs = keras.Input((2, 6))
    model = keras.Model(inputs, keras.layers.Dense(4)(inputs))
    model.queue = MemoryQueue(10, 4, name="key_queue")  # owned: tracked and saved
    model.compile(
        optimizer="sgd", loss=InfoNCELoss(temperature=0.2, queue=model.queue), jit_compile=True
    )
    x = rng.normal(size=(12, 2, 6)).astype("float32")
    history = model.fit(x, batch_size=4, epochs=1, verbose=0, shuffle=False)
    assert np.isfinite(history.history["loss"]).all()
    assert int(model.queue.filled.numpy()) == 10
    assert int(model.queue.pointer.numpy()) == 12 % 10
    assert any(v is model.queue.buffer for v in model.non_trainable_variables)
    # The last batch's keys (row 1 of each example) sit in slots 8, 9, 0, 1.
    keys = keras.ops.convert_to_numpy(model(x[8:]))[:, 1]
    keys = keys / np.linalg.norm(keys, axis=1, keepdims=True)
    stored = model.queue.buffer.numpy()[[8, 9, 0, 1]]
    # Keys were computed before the SGD step of that batch; compare directions loosely.
    assert np.all(np.sum(keys * stored, axis=1) > 0.9)
