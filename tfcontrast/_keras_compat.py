"""The one door to Keras internals (private).

tfcontrast uses the public Keras API everywhere except in the few places below, where
no public function does the job. Every such use is a function of this module, so that a
Keras release that moves or renames an internal breaks (and is fixed) here only. Each
function says:

- which Keras internal it reads, and the Keras versions it was checked on (the versions
  `tests/test_keras_compat.py` ran on; CI installs Keras 3.15);
- what it does when the internal is missing (the fallback), which is a public-API
  equivalent wherever one exists, and the loss of function otherwise.

`tests/test_keras_compat.py` checks every function on the installed Keras, and every
fallback against the internal it replaces. "Checked on" below lists where that test
passed: Keras 3.15 (TensorFlow 2.21), and also 3.8 and 3.12, where every internal here
is the same; tfcontrast as a whole still needs 3.15 (see `setup.cfg`).
"""

from __future__ import annotations

import keras
from keras import ops

# -- losses ----------------------------------------------------------------------------


class _Reducer(keras.losses.Loss):
    """A loss whose per-example values are its `y_pred`: calling it is Keras' reduction."""

    def call(self, y_true, y_pred):
        return y_pred


def reduce_weighted_values(values, sample_weight=None, reduction="sum_over_batch_size", dtype=None):
    """Keras' reduction of per-example loss values: `sample_weight`, then the
    `reduction` (`"sum_over_batch_size"`, `"sum"`, `"mean"`, `"mean_with_sample_weight"`
    or `None`/`"none"`), and the `1 / num_replicas` scaling under `tf.distribute`.

    Internal: `keras.src.losses.loss.reduce_weighted_values` (what
    `keras.losses.Loss.__call__` runs after `call`). Checked on Keras 3.8, 3.12, 3.15.
    Fallback: the same reduction through the public API, a `keras.losses.Loss` whose
    `call` returns the values (one more name scope and conversion, same numbers).
    """
    try:
        from keras.src.losses.loss import reduce_weighted_values as reduce
    except ImportError:  # pragma: no cover - exercised by the tests with the import hidden
        return _public_reduce(values, sample_weight, reduction, dtype)
    return reduce(values, sample_weight=sample_weight, reduction=reduction, dtype=dtype)


def _public_reduce(values, sample_weight, reduction, dtype):
    if dtype is None:  # a Loss would cast to floatx(); the internal keeps the dtype
        dtype = keras.backend.standardize_dtype(ops.convert_to_tensor(values).dtype)
    reducer = _Reducer(name="reduce", reduction=reduction, dtype=dtype)
    return reducer(values, values, sample_weight=sample_weight)


# -- models ----------------------------------------------------------------------------


def aggregate_additional_loss(model, loss):
    """One `add_loss` / regularization loss of `model` as a scalar, as Keras'
    `Trainer.compute_loss` adds it to the compiled loss (for a `compute_loss` override
    that must keep those losses).

    Internal: `keras.Model._aggregate_additional_loss` (a Trainer method, so a model that
    overrides it is honoured). Checked on Keras 3.8, 3.12, 3.15.
    Fallback: what that method does on 3.15: cast a non-float loss to `floatx()` and sum.
    """
    aggregate = getattr(model, "_aggregate_additional_loss", None)
    if aggregate is not None:
        return aggregate(loss)
    return _sum_loss(loss)


def _sum_loss(loss):
    loss = ops.convert_to_tensor(loss)
    if not keras.backend.is_float_dtype(loss.dtype):
        loss = ops.cast(loss, keras.backend.floatx())
    return ops.sum(loss)


def flatten_layers(layer, include_self: bool = True) -> list:
    """Every layer below `layer` (nested models and sublayers held as attributes
    included), each once, `layer` first with `include_self`.

    Internal: `keras.layers.Layer._flatten_layers`. Checked on Keras 3.8, 3.12, 3.15.
    Fallback: a walk over the public `.layers` of models (sublayers that a custom layer
    holds as attributes are then missed).
    """
    walk = getattr(layer, "_flatten_layers", None)
    if walk is not None:
        return list(walk(include_self=include_self, recursive=True))
    return _public_flatten(layer, include_self)


def _public_flatten(layer, include_self):
    found, seen, stack = [], {id(layer)}, list(reversed(getattr(layer, "layers", [])))
    while stack:
        sub = stack.pop()
        if id(sub) in seen:
            continue
        seen.add(id(sub))
        found.append(sub)
        stack.extend(reversed(getattr(sub, "layers", [])))
    return [layer, *found] if include_self else found


def own_trainable_variables(layer) -> list:
    """The trainable variables that `layer` created itself, not those of its sublayers.

    Internal: `keras.layers.Layer._trainable_variables`. Checked on Keras 3.8, 3.12, 3.15.
    Fallback: `layer.trainable_variables` less those of the layers `flatten_layers`
    finds below it.
    """
    own = getattr(layer, "_trainable_variables", None)
    if own is not None:
        return list(own)
    below = {id(v) for sub in flatten_layers(layer, False) for v in sub.trainable_variables}
    return [v for v in layer.trainable_variables if id(v) not in below]


# -- optimizers ------------------------------------------------------------------------


def variable_index(optimizer, variable) -> int:
    """The position of `variable` among the variables `optimizer` was built with, which
    indexes the slot lists of `add_optimizer_variables` (how Keras' own optimizers find
    a variable's momentum in `update_step`).

    Internal: `keras.optimizers.Optimizer._get_variable_index`. Checked on Keras 3.8, 3.12, 3.15.
    Fallback: none (no public equivalent; under `tf.distribute` the key of a variable is
    backend-internal): a `RuntimeError` that says so.
    """
    index = getattr(optimizer, "_get_variable_index", None)
    if index is None:  # pragma: no cover - no Keras 3 release lacks it so far
        raise RuntimeError(
            f"{type(optimizer).__name__}: this Keras ({keras.__version__}) has no "
            "Optimizer._get_variable_index; tfcontrast's optimizers need Keras 3.15."
        )
    return index(variable)


# -- saving ----------------------------------------------------------------------------


def _serialization_lib():
    try:
        from keras.src.saving import serialization_lib
    except ImportError:  # pragma: no cover - exercised by the tests with the import hidden
        return None
    if not hasattr(serialization_lib, "record_object_after_deserialization"):
        return None  # pragma: no cover
    return serialization_lib


def get_shared_object(key: str):
    """The object recorded under `key` in the current `keras.saving` load, or None
    (outside a load, or nothing recorded yet).

    Internal: `keras.src.saving.serialization_lib.get_shared_object` (the table behind
    Keras' `shared_object_id`, alive for one `load_model` / `deserialize_keras_object`).
    Checked on Keras 3.8, 3.12, 3.15.
    Fallback: None (nothing is shared: each deserialized copy is a new object).
    """
    lib = _serialization_lib()
    return None if lib is None else lib.get_shared_object(key)


def record_shared_object(obj, key: str) -> None:
    """Records `obj` under `key` for the rest of the current `keras.saving` load
    (nothing outside a load).

    Internal: `keras.src.saving.serialization_lib.record_object_after_deserialization`.
    Checked on Keras 3.8, 3.12, 3.15.
    Fallback: nothing is recorded (see `get_shared_object`).
    """
    lib = _serialization_lib()
    if lib is not None:
        lib.record_object_after_deserialization(obj, key)


# -- TensorFlow trainer ----------------------------------------------------------------


def patch_multi_worker_reduce() -> bool:
    """Makes the TensorFlow trainer reduce scalar logs with `axis=None` under
    `MultiWorkerMirroredStrategy` (Keras 3 reduces them with `axis=0`, which fails:
    "Invalid reduction dimension 0 for input with 0 dimensions",
    tensorflow/tensorflow#72388). Idempotent; True when the patch is in place.

    Internal: replaces `keras.src.backend.tensorflow.trainer.reduce_per_replica` and
    reads `_collective_all_reduce_multi_worker` there. Checked on Keras 3.8, 3.12, 3.15.
    Fallback: False and no patch, when the TensorFlow backend is not in use or the
    trainer module no longer has those names (`fit` under multi-worker then fails as
    above if that Keras still has the bug).
    """
    if keras.backend.backend() != "tensorflow":
        return False
    try:
        from keras.src.backend.tensorflow import trainer as tf_trainer
    except ImportError:  # pragma: no cover
        return False
    original = getattr(tf_trainer, "reduce_per_replica", None)
    is_multi_worker = getattr(tf_trainer, "_collective_all_reduce_multi_worker", None)
    if original is None or is_multi_worker is None:
        return False
    if getattr(original, "_tfcontrast_patched", False):
        return True
    import tensorflow as tf

    def _rank(value):
        if isinstance(value, tf.distribute.DistributedValues):
            value = value.values[0]
        shape = getattr(value, "shape", None)
        return None if shape is None else shape.rank

    def reduce_per_replica(values, strategy, reduction):
        if reduction in ("auto", "mean") and is_multi_worker(strategy):

            def reduce_one(value):
                if _rank(value) == 0:
                    return strategy.reduce("MEAN", value, axis=None)
                return original(value, strategy, reduction)

            return tf.nest.map_structure(reduce_one, values)
        return original(values, strategy, reduction)

    reduce_per_replica._tfcontrast_patched = True
    tf_trainer.reduce_per_replica = reduce_per_replica
    return True


# -- files -----------------------------------------------------------------------------


def keras_home() -> str:
    """The directory Keras caches downloads under (`models/` holds application weights).

    Internal: `keras.src.backend.config.keras_home` (checked on Keras 3.15). Fallback: the
    rule it documents, `$KERAS_HOME`, else `~/.keras` (`/tmp/.keras` where the home
    directory is not writable).
    """
    try:
        from keras.src.backend.config import keras_home as internal

        return internal()
    except ImportError:
        return _public_keras_home()


def _public_keras_home() -> str:
    import os

    if "KERAS_HOME" in os.environ:
        return os.environ["KERAS_HOME"]
    base = os.path.expanduser("~")
    return os.path.join(base if os.access(base, os.W_OK) else "/tmp", ".keras")
