"""CrossBatchMemory (XBM): NumPy ring buffer and NumPy losses on batch + memory."""

import keras
import numpy as np
import pytest

from tests.backend_utils import value_and_grad
from tfcontrast.losses import ContrastiveLoss, CrossBatchMemory, TripletLoss

# -- NumPy references ----------------------------------------------------------------


def np_contrastive(labels, x, ref_labels, refs, margin):
    out = np.zeros(len(x))
    for i in range(len(x)):
        pos, neg = [], []
        for j in range(len(refs)):
            d = np.linalg.norm(x[i] - refs[j])
            if j == i:  # the anchor itself is reference i (offset 0)
                continue
            if labels[i] == ref_labels[j]:
                pos.append(d * d)
            else:
                neg.append(max(0.0, margin - d) ** 2)
        out[i] = (np.mean(pos) if pos else 0.0) + (np.mean(neg) if neg else 0.0)
    return out


def np_triplet_all(labels, x, ref_labels, refs, margin):
    out = np.zeros(len(x))
    for i in range(len(x)):
        terms = []
        for p in range(len(refs)):
            if p == i or ref_labels[p] != labels[i]:
                continue
            for n in range(len(refs)):
                if ref_labels[n] == labels[i]:
                    continue
                d_ap = np.linalg.norm(x[i] - refs[p])
                d_an = np.linalg.norm(x[i] - refs[n])
                terms.append(max(0.0, d_ap - d_an + margin))
        out[i] = np.mean(terms) if terms else 0.0
    return out


class NumpyRing:
    """Slot `t % size` holds the `t`-th example ever enqueued."""

    def __init__(self, size, dim):
        self.size, self.seen = size, 0
        self.x = np.zeros((size, dim))
        self.y = np.zeros(size, int)

    def push(self, labels, x):
        for label, row in zip(labels, x, strict=True):
            self.x[self.seen % self.size] = row
            self.y[self.seen % self.size] = label
            self.seen += 1

    def valid(self):
        n = min(self.seen, self.size)
        return self.y[:n], self.x[:n]


def _batch(rng, n, dim=4, classes=3):
    return rng.integers(0, classes, n).astype("int32"), rng.normal(size=(n, dim)).astype("float32")


# -- tests -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "make",
    [lambda: ContrastiveLoss(margin=1.5), lambda: TripletLoss(miner="all", distance="euclidean")],
)
def test_empty_memory_equals_wrapped_loss(rng, make):
    labels, x = _batch(rng, 10)
    wrapped = make()
    xbm = CrossBatchMemory(make(), memory_size=16)
    np.testing.assert_allclose(float(xbm(labels, x)), float(wrapped(labels, x)), rtol=1e-6)


def test_ring_buffer_holds_last_examples(rng):
    xbm = CrossBatchMemory(ContrastiveLoss(), memory_size=7)
    ring = NumpyRing(7, 4)
    for n in [3, 2, 5, 9, 4, 1]:  # partial fill, wrap-around, a batch larger than memory
        labels, x = _batch(rng, n, classes=50)
        xbm(labels, x)
        ring.push(labels, x)
        assert int(xbm.memory_count.numpy()) == min(ring.seen, 7)
        valid_labels, valid_x = ring.valid()
        count = len(valid_labels)
        np.testing.assert_array_equal(xbm.memory_labels.numpy()[:count], valid_labels)
        np.testing.assert_allclose(xbm.memory_embeddings.numpy()[:count], valid_x, rtol=1e-6)
    xbm.reset()
    assert int(xbm.memory_count.numpy()) == 0


@pytest.mark.parametrize("which", ["contrastive", "triplet"])
def test_loss_uses_batch_and_valid_memory(rng, which):
    if which == "contrastive":
        make, reference = lambda: ContrastiveLoss(margin=1.5), np_contrastive
        kwargs = dict(margin=1.5)
    else:
        make = lambda: TripletLoss(miner="all", margin=0.5, distance="euclidean")  # noqa: E731
        reference, kwargs = np_triplet_all, dict(margin=0.5)
    xbm = CrossBatchMemory(make(), memory_size=10)
    ring = NumpyRing(10, 4)
    # Batches of 4: the memory is partly filled (4, 8 valid slots) and then wraps.
    for _ in range(4):
        labels, x = _batch(rng, 4)
        mem_labels, mem_x = ring.valid()
        expected = reference(
            labels,
            x.astype(np.float64),
            np.concatenate([labels, mem_labels]),
            np.concatenate([x, mem_x]),
            **kwargs,
        )
        value = float(xbm(labels, x))
        np.testing.assert_allclose(value, expected.mean(), rtol=1e-5, atol=1e-6)
        ring.push(labels, x)


def test_per_example_output_and_gradients(rng):
    xbm = CrossBatchMemory(ContrastiveLoss(), memory_size=8, reduction=None)
    xbm(*_batch(rng, 6))
    labels, x = _batch(rng, 6)
    out, (grad,) = value_and_grad(lambda x: xbm(labels, x), x)
    assert out.shape == (6,)
    assert np.all(np.isfinite(grad)) and np.any(grad != 0)
    assert not xbm.memory_embeddings.trainable


@pytest.mark.tf_only(
    reason="the memory's variables belong to the loss, not the model: JAX's trainer only "
    "updates model-owned state (and forbids creating it inside the step)"
)
@pytest.mark.parametrize("jit_compile", [False, True])
def test_fit(rng, jit_compile):
    x = rng.normal(size=(48, 6)).astype("float32")
    y = (np.arange(48) % 4).astype("int32")
    loss = CrossBatchMemory(TripletLoss(miner="all"), memory_size=20)
    model = keras.Sequential([keras.Input((6,)), keras.layers.Dense(4)])
    model.compile(optimizer="sgd", loss=loss, jit_compile=jit_compile)
    history = model.fit(x, y, batch_size=16, epochs=2, verbose=0)
    assert all(np.isfinite(history.history["loss"]))
    # 6 steps of 16: the memory is full and the pointer is at 96 % 20.
    assert int(loss.memory_count.numpy()) == 20
    assert int(loss.memory_pointer.numpy()) == 96 % 20


def test_memory_is_a_memory_queue(rng):
    """One ring buffer: the memory is a `MemoryQueue`, written by replica 0 only under
    `tf.distribute` (every replica enqueues the same gathered batch)."""
    from tfcontrast.layers import MemoryQueue

    xbm = CrossBatchMemory(ContrastiveLoss(), memory_size=6)
    assert xbm.memory_queue is None and xbm.memory() == (None, None)
    xbm(*_batch(rng, 4))
    queue = xbm.memory_queue
    assert isinstance(queue, MemoryQueue) and (queue.size, queue.dim) == (6, 4)
    assert queue.with_labels and queue.aggregation == "only_first_replica"
    assert xbm.memory_embeddings is queue.buffer and xbm.memory_labels is queue.labels
    assert xbm.memory_count is queue.filled and xbm.memory_pointer is queue.pointer
    labels, x = _batch(rng, 5)
    xbm(labels, x)  # 4 + 5 rows through 6 slots: wrapped
    assert int(xbm.memory_count.numpy()) == 6 and int(xbm.memory_pointer.numpy()) == 3
    mem_labels, mem_x = xbm.memory()
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(mem_labels)[[4, 5, 0, 1, 2]], labels)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(mem_x)[[4, 5, 0, 1, 2]], x)


def test_serialization_round_trip(rng):
    loss = CrossBatchMemory(TripletLoss(miner="hard", margin=0.3), memory_size=32)
    loss(*_batch(rng, 5))  # builds the memory (embedding_dim=4)
    config = keras.saving.serialize_keras_object(loss)
    restored = keras.saving.deserialize_keras_object(config)
    assert isinstance(restored, CrossBatchMemory)
    assert isinstance(restored.loss, TripletLoss)
    assert restored.loss.margin == pytest.approx(0.3)
    assert restored.memory_size == 32 and restored.embedding_dim == 4
    assert restored.get_config() == loss.get_config()
    assert int(restored.memory_count.numpy()) == 0  # the memory restarts empty


def test_bad_input(rng):
    with pytest.raises(ValueError, match="`loss`"):
        CrossBatchMemory(keras.losses.MeanSquaredError())
    with pytest.raises(ValueError, match="memory_size"):
        CrossBatchMemory(ContrastiveLoss(), memory_size=0)
    with pytest.raises(ValueError, match="memory_size"):
        CrossBatchMemory(ContrastiveLoss(), memory_size=2.5)
    with pytest.raises(ValueError, match="embedding_dim"):
        CrossBatchMemory(ContrastiveLoss(), embedding_dim=-3)
    xbm = CrossBatchMemory(ContrastiveLoss(), memory_size=8, embedding_dim=4)
    with pytest.raises(ValueError, match="y_pred"):
        xbm(*_batch(rng, 5, dim=3))
    with pytest.raises(ValueError, match="y_true"):
        xbm(None, _batch(rng, 5)[1])
