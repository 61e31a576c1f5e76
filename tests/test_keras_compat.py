"""`tfcontrast._keras_compat`, the one door to Keras internals: each function does what
its callers need on the installed Keras, each fallback gives what the internal gives, and
no other module reaches into Keras internals."""

import pathlib
import re
import sys
import types

import keras
import numpy as np
import pytest
from keras import ops

from tests.backend_utils import BACKEND, to_numpy
from tfcontrast import _keras_compat as compat

# -- one door ---------------------------------------------------------------------------

PRIVATE = re.compile(
    r"keras\.src|_aggregate_additional_loss|serialization_lib|_flatten_layers"
    r"|\._trainable_variables|_get_variable_index"
)


def test_no_other_module_uses_keras_internals():
    package = pathlib.Path(compat.__file__).parent
    offenders = [
        f"{path.relative_to(package)}:{number}: {line.strip()}"
        for path in sorted(package.rglob("*.py"))
        if path.name != "_keras_compat.py"
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if PRIVATE.search(line)
    ]
    assert offenders == []


# -- reduce_weighted_values --------------------------------------------------------------

REDUCTIONS = [None, "none", "sum", "sum_over_batch_size", "mean", "mean_with_sample_weight"]


def _expected(values, weights, reduction):
    weighted = values if weights is None else values * weights
    if reduction in (None, "none"):
        return weighted
    if reduction == "sum":
        return weighted.sum()
    if reduction == "mean_with_sample_weight" and weights is not None:
        return weighted.sum() / weights.sum()
    return weighted.sum() / len(values)


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("weighted", [False, True])
def test_reduce_weighted_values_and_its_fallback(reduction, weighted, monkeypatch):
    values = np.array([0.5, 2.0, 1.5, 4.0], "float32")
    weights = np.array([1.0, 0.0, 2.0, 0.5], "float32") if weighted else None
    expected = _expected(values.astype(np.float64), weights, reduction)
    out = compat.reduce_weighted_values(values, weights, reduction=reduction, dtype="float32")
    np.testing.assert_allclose(to_numpy(out), expected, rtol=1e-6)
    fallback = compat._public_reduce(values, weights, reduction, "float32")
    np.testing.assert_array_equal(to_numpy(fallback), to_numpy(out))
    # With the internal gone, the public route is taken.
    monkeypatch.setitem(sys.modules, "keras.src.losses.loss", None)
    hidden = compat.reduce_weighted_values(values, weights, reduction=reduction, dtype="float32")
    np.testing.assert_array_equal(to_numpy(hidden), to_numpy(out))


def test_reduce_keeps_the_dtype_it_is_given():
    # float16, not float64: JAX truncates float64 to float32 unless x64 is enabled.
    values = np.array([1.0, 3.0], "float16")
    for out in (
        compat.reduce_weighted_values(values, dtype="float16"),
        compat._public_reduce(values, None, "sum_over_batch_size", None),
    ):
        assert keras.backend.standardize_dtype(out.dtype) == "float16"
        assert float(to_numpy(out)) == 2.0


def test_the_internal_reduction_is_still_there():
    """Fails when a Keras release moves it: update `reduce_weighted_values` then."""
    from keras.src.losses.loss import reduce_weighted_values

    assert callable(reduce_weighted_values)


# -- models ------------------------------------------------------------------------------


class _Block(keras.layers.Layer):
    """A custom layer with a weight of its own and a sublayer held as an attribute."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.inner = keras.layers.Dense(3, name="inner")

    def build(self, input_shape):
        self.gain = self.add_weight(shape=(3,), initializer="ones", name="gain")
        self.inner.build(input_shape)

    def call(self, x):
        return self.inner(x) * self.gain


def _nested_model():
    encoder = keras.Sequential([keras.Input((4,)), keras.layers.Dense(4, name="enc")], name="e")
    inputs = keras.Input((4,))
    block = _Block(name="block")
    outputs = block(encoder(inputs))
    return keras.Model(inputs, outputs), encoder, block


def test_flatten_layers_finds_nested_layers_once():
    model, encoder, block = _nested_model()
    found = compat.flatten_layers(model)
    assert found[0] is model
    names = [layer.name for layer in found]
    assert {"e", "enc", "block", "inner"} <= set(names) and len(names) == len(set(names))
    assert model not in compat.flatten_layers(model, include_self=False)
    # The public fallback walks `.layers`: it finds the nested model's layers, not the
    # sublayer the custom block holds as an attribute.
    public = [layer.name for layer in compat._public_flatten(model, True)]
    assert public[0] == model.name and {"e", "enc", "block"} <= set(public)
    assert "inner" not in public and set(public) <= set(names)


def test_own_trainable_variables():
    model, encoder, block = _nested_model()
    assert [v.name for v in compat.own_trainable_variables(block)] == ["gain"]
    assert compat.own_trainable_variables(model) == []
    assert len(compat.own_trainable_variables(block.inner)) == 2  # kernel, bias
    # The fallback (no private attribute): the layer's variables less its sublayers'.
    sub = types.SimpleNamespace(trainable_variables=list(block.inner.trainable_variables))
    fake = types.SimpleNamespace(trainable_variables=list(block.trainable_variables), layers=[sub])
    assert [v.name for v in compat.own_trainable_variables(fake)] == ["gain"]


def test_aggregate_additional_loss():
    model = keras.Sequential(
        [
            keras.Input((2,)),
            keras.layers.Dense(
                1, kernel_initializer="ones", kernel_regularizer=keras.regularizers.L2(0.5)
            ),
        ]
    )
    (extra,) = model.losses  # 0.5 * (1 + 1)
    assert float(to_numpy(compat.aggregate_additional_loss(model, extra))) == pytest.approx(1.0)
    vector = ops.convert_to_tensor([1.5, 2.5])
    assert float(to_numpy(compat.aggregate_additional_loss(model, vector))) == pytest.approx(4.0)
    # The fallback (an object without Keras' method) sums and casts non-floats to floatx,
    # as Keras' method does.
    plain = types.SimpleNamespace()
    assert float(to_numpy(compat.aggregate_additional_loss(plain, vector))) == pytest.approx(4.0)
    as_int = compat.aggregate_additional_loss(plain, np.array([1, 2], "int32"))
    assert keras.backend.standardize_dtype(as_int.dtype) == keras.backend.floatx()
    np.testing.assert_array_equal(
        to_numpy(compat.aggregate_additional_loss(model, np.array([1, 2], "int32"))),
        to_numpy(as_int),
    )


# -- optimizers --------------------------------------------------------------------------


def test_variable_index_matches_the_build_order():
    variables = [keras.Variable(np.zeros(n, "float32"), name=f"v{n}") for n in (1, 2, 3)]
    optimizer = keras.optimizers.SGD(momentum=0.9)
    optimizer.build(variables)
    assert [compat.variable_index(optimizer, v) for v in variables] == [0, 1, 2]
    assert [compat.variable_index(optimizer, v) for v in reversed(variables)] == [2, 1, 0]


# -- saving ------------------------------------------------------------------------------


def test_shared_objects_live_for_one_load(monkeypatch):
    from keras.src.saving import serialization_lib

    marker = object()
    assert compat.get_shared_object("tfcontrast.test/a") is None  # outside a load
    compat.record_shared_object(marker, "tfcontrast.test/a")  # a no-op there
    with serialization_lib.ObjectSharingScope():
        assert compat.get_shared_object("tfcontrast.test/a") is None
        compat.record_shared_object(marker, "tfcontrast.test/a")
        assert compat.get_shared_object("tfcontrast.test/a") is marker
    assert compat.get_shared_object("tfcontrast.test/a") is None
    # Without the internal: nothing is shared, nothing fails.
    monkeypatch.setitem(sys.modules, "keras.src.saving.serialization_lib", None)
    monkeypatch.delattr(sys.modules["keras.src.saving"], "serialization_lib", raising=False)
    with serialization_lib.ObjectSharingScope():
        compat.record_shared_object(marker, "tfcontrast.test/a")
        assert compat.get_shared_object("tfcontrast.test/a") is None


# -- TensorFlow trainer ------------------------------------------------------------------


@pytest.mark.skipif(BACKEND != "tensorflow", reason="the TensorFlow trainer's")
def test_multi_worker_patch_is_idempotent_and_transparent(monkeypatch):
    import tensorflow as tf
    from keras.src.backend.tensorflow import trainer as tf_trainer

    original = tf_trainer.reduce_per_replica
    monkeypatch.setattr(tf_trainer, "reduce_per_replica", original)  # restored after
    assert compat.patch_multi_worker_reduce() is True
    patched = tf_trainer.reduce_per_replica
    assert patched is not original and patched._tfcontrast_patched
    assert compat.patch_multi_worker_reduce() is True
    assert tf_trainer.reduce_per_replica is patched  # not wrapped twice
    # Outside multi-worker it is the original reduction.
    strategy = tf.distribute.get_strategy()
    values = {"loss": tf.constant(2.0), "vec": tf.constant([1.0, 2.0])}
    for reduction in ("auto", "mean", "sum"):
        got = patched(values, strategy, reduction)
        want = original(values, strategy, reduction)
        for key in values:
            np.testing.assert_array_equal(got[key].numpy(), want[key].numpy())


@pytest.mark.skipif(BACKEND != "tensorflow", reason="the TensorFlow trainer's")
def test_multi_worker_patch_falls_back_to_no_patch(monkeypatch):
    from keras.src.backend.tensorflow import trainer as tf_trainer

    original = tf_trainer.reduce_per_replica
    monkeypatch.setattr(tf_trainer, "reduce_per_replica", original)
    monkeypatch.delattr(tf_trainer, "_collective_all_reduce_multi_worker")
    assert compat.patch_multi_worker_reduce() is False
    assert tf_trainer.reduce_per_replica is original
    monkeypatch.setattr(keras.backend, "backend", lambda: "jax")
    assert compat.patch_multi_worker_reduce() is False


def test_keras_home_follows_keras():
    import os

    from keras.src.backend.config import keras_home  # the internal it wraps

    assert compat.keras_home() == keras_home()
    if "KERAS_HOME" not in os.environ:
        assert compat._public_keras_home() == keras_home()
