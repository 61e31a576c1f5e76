"""`custom_gradient` with one calling convention on every backend (private)."""

from __future__ import annotations

from keras import ops


def custom_gradient(forward):
    """`keras.ops.custom_gradient` whose gradient function takes the upstream gradient
    as its only argument.

    `forward(*inputs)` returns `(value, grad)` with `grad(upstream) -> input gradients`.
    Keras passes the upstream gradient positionally on TensorFlow and JAX, and by name
    after the saved inputs on torch; this wrapper hides the difference. First-order
    gradients only, as the backends' own hand-written gradients.

    Example:

    ```python
    @custom_gradient
    def square(x):
        return x * x, lambda upstream: 2.0 * x * upstream
    ```
    """

    @ops.custom_gradient
    def wrapped(*inputs):
        value, grad = forward(*inputs)

        def backend_grad(*args, upstream=None):
            return grad(args[0] if upstream is None else upstream)

        return value, backend_grad

    return wrapped
