"""Backend-agnostic test helpers: gradients on TensorFlow, JAX and PyTorch.

Tests that only need "the value and the gradient of a scalar function" use
`value_and_grad` instead of `tf.GradientTape`, so they run under every Keras backend
(`KERAS_BACKEND=tensorflow|jax|torch`).
"""

from __future__ import annotations

import keras
import numpy as np

BACKEND = keras.backend.backend()


def to_numpy(x):
    return None if x is None else np.asarray(keras.ops.convert_to_numpy(x))


def value_and_grad(fn, *args):
    """Returns `(fn(*args), [d sum(fn(*args)) / d arg for arg in args])` as NumPy.

    `fn` maps tensors to a tensor (any shape: the gradient is that of its sum). Each
    argument is a NumPy array; a gradient the function does not depend on comes back
    as zeros (as `tf.GradientTape` with `unconnected_gradients="zero"`).
    """
    args = [np.asarray(a) for a in args]
    if BACKEND == "tensorflow":
        import tensorflow as tf

        variables = [tf.Variable(a) for a in args]
        with tf.GradientTape() as tape:
            out = fn(*variables)
            total = tf.reduce_sum(out)
        grads = tape.gradient(total, variables, unconnected_gradients="zero")
        return to_numpy(out), [to_numpy(g) for g in grads]
    if BACKEND == "jax":
        import jax
        import jax.numpy as jnp

        def total(*xs):
            out = fn(*xs)
            return jnp.sum(out), out

        (_, out), grads = jax.value_and_grad(total, argnums=tuple(range(len(args))), has_aux=True)(
            *[jnp.asarray(a) for a in args]
        )
        return to_numpy(out), [to_numpy(g) for g in grads]
    if BACKEND == "torch":
        import torch

        tensors = [torch.tensor(a, requires_grad=True) for a in args]
        out = fn(*tensors)
        if not out.requires_grad:  # the output does not depend on the inputs
            return to_numpy(out), [np.zeros_like(a) for a in args]
        grads = torch.autograd.grad(out.sum(), tensors, allow_unused=True)
        grads = [torch.zeros_like(t) if g is None else g for t, g in zip(tensors, grads)]
        return to_numpy(out.detach()), [to_numpy(g) for g in grads]
    raise NotImplementedError(f"value_and_grad: backend {BACKEND!r} is not supported.")


def grads_wrt_weights(fn, weights):
    """Gradients of `sum(fn())` with respect to the Keras variables `weights`.

    `fn` reads the variables (e.g. a model or a loss with a learnable temperature). On
    JAX the variables are substituted statelessly; returns `(value, [grads])` as NumPy.
    """
    if BACKEND == "tensorflow":
        import tensorflow as tf

        with tf.GradientTape() as tape:
            out = fn()
            total = tf.reduce_sum(out)
        grads = tape.gradient(total, weights, unconnected_gradients="zero")
        return to_numpy(out), [to_numpy(g) for g in grads]
    if BACKEND == "jax":
        import jax
        import jax.numpy as jnp

        def total(values):
            with keras.StatelessScope(state_mapping=list(zip(weights, values))):
                out = fn()
            return jnp.sum(out), out

        (_, out), grads = jax.value_and_grad(total, has_aux=True)([w.value for w in weights])
        return to_numpy(out), [to_numpy(g) for g in grads]
    if BACKEND == "torch":
        import torch

        out = fn()
        grads = torch.autograd.grad(out.sum(), [w.value for w in weights], allow_unused=True)
        grads = [torch.zeros_like(w.value) if g is None else g for w, g in zip(weights, grads)]
        return to_numpy(out.detach()), [to_numpy(g) for g in grads]
    raise NotImplementedError(f"grads_wrt_weights: backend {BACKEND!r} is not supported.")
