"""tfcontrast.distribute in one process: the one-replica and non-TensorFlow code paths.

The multi-replica behaviour is tested in subprocesses (test_mirrored.py,
test_multi_worker.py); here the helpers must be exact identities.
"""

from __future__ import annotations

import json

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfcontrast import distribute
from tfcontrast.layers import PredictionHead, ProjectionHead


def test_one_replica_is_the_identity():
    x = np.arange(12, dtype="float32").reshape(4, 3)
    labels = np.array([0, 1, 0, 1], dtype="int32")
    assert distribute.num_replicas() == 1
    assert distribute.replica_id() == 0
    assert distribute.all_gather(x) is x
    assert distribute.all_reduce_sum(x) is x
    assert distribute.all_reduce_mean(x) is x
    got_labels, got, offset = distribute.gather_references(labels, x)
    assert got_labels is labels and got is x and offset == 0


def test_cross_replica_context_and_one_device_strategy_return_the_local_batch():
    x = tf.constant(np.ones((3, 2), "float32"))
    strategy = tf.distribute.OneDeviceStrategy("/cpu:0")
    with strategy.scope():  # cross-replica context: nothing to gather
        assert distribute.gather_references(None, x)[2] == 0

    def replica_fn():
        _, gathered, offset = distribute.gather_references(None, x)
        return tf.shape(gathered)[0], offset, distribute.num_replicas()

    rows, offset, replicas = strategy.run(replica_fn)
    assert int(rows) == 3 and int(offset) == 0 and replicas == 1


def test_non_tensorflow_backends_get_the_local_batch(monkeypatch):
    # Under JAX + keras.distribution.DataParallel the loss already sees the global batch
    # (one SPMD program over sharded arrays), so the helpers must not gather.
    monkeypatch.setattr(keras.backend, "backend", lambda: "jax")
    x = np.ones((5, 2), "float32")
    assert distribute._replica_context() is None
    assert distribute.num_replicas() == 1
    labels, got, offset = distribute.gather_references(None, x)
    assert labels is None and got is x and offset == 0
    with pytest.raises(ValueError, match="TensorFlow backend"):
        distribute.get_strategy("mirrored")


def test_get_strategy_resolves_names(monkeypatch):
    with pytest.raises(ValueError, match="`kind`"):
        distribute.get_strategy("horovod")
    monkeypatch.delenv("TF_CONFIG", raising=False)
    assert distribute.get_strategy("default") is tf.distribute.get_strategy()
    assert distribute.get_strategy("auto") is tf.distribute.get_strategy()
    # A TF_CONFIG naming one task is not a cluster.
    monkeypatch.setenv(
        "TF_CONFIG",
        json.dumps(
            {"cluster": {"worker": ["127.0.0.1:1"]}, "task": {"type": "worker", "index": 0}}
        ),
    )
    assert distribute.get_strategy("auto") is tf.distribute.get_strategy()
    assert isinstance(distribute.get_strategy("mirrored"), tf.distribute.MirroredStrategy)


@pytest.mark.parametrize("cls", [ProjectionHead, PredictionHead])
def test_heads_can_use_synchronized_batch_norm(cls):
    head = cls(synchronized=True) if cls is ProjectionHead else cls(16, 8, synchronized=True)
    norms = [b for b in head.blocks if isinstance(b, keras.layers.BatchNormalization)]
    assert norms and all(b.synchronized for b in norms)
    config = keras.saving.serialize_keras_object(head)
    clone = keras.saving.deserialize_keras_object(config)
    assert clone.synchronized and clone.get_config() == head.get_config()
    assert not cls(16, 8).synchronized if cls is PredictionHead else not cls().synchronized
