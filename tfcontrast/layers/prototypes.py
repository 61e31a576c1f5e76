"""Prototypes: a linear layer of unit-norm prototype vectors (DINO, SwAV).

DINO's head ends with a weight-normalised linear layer (the `weight_g` of
`torch.nn.utils.weight_norm` fixed to 1, `norm_last_layer=True`) on an L2-normalised
bottleneck; SwAV scores normalised features against normalised prototypes. Both are
cosines between the input and each prototype, which is what `Prototypes` returns.
"""

from __future__ import annotations

import keras
from keras import ops

from tfcontrast import _checks
from tfcontrast._normalization import l2_normalize


@keras.saving.register_keras_serializable(package="tfcontrast")
class Prototypes(keras.layers.Layer):
    """`cos(x, c_k)` for `K` learned prototypes `c_k`: `l2n(x) @ l2n(W)`.

    The kernel `W` `(D, K)` is normalised column by column in the forward pass (weight
    normalisation with the gain fixed to 1), so the scores are cosines in `[-1, 1]`
    whatever the kernel's scale; weight decay on `W` does not change them. (SwAV's
    reference code renormalises the prototypes in place after every step instead: the
    same forward values, on every backend without an assignment outside the step.)

    `call(x, freeze=...)`: with `freeze` a boolean (tensor), the kernel gets no gradient
    while it is true: SwAV keeps its prototypes fixed for the first iterations, DINO its
    last layer for the first epoch.

    Args:
        num_prototypes: `K`, at least 2.

    Example:

    ```python
    prototypes = tfcontrast.layers.Prototypes(3000)
    scores = prototypes(projections)           # (B, 3000) cosines
    ```
    """

    def __init__(self, num_prototypes: int, **kwargs):
        super().__init__(**kwargs)
        self.num_prototypes = _checks.integer(
            "num_prototypes", num_prototypes, "Prototypes", least=2, numpy_ints=False
        )

    def build(self, input_shape):
        self.kernel = self.add_weight(
            shape=(int(input_shape[-1]), self.num_prototypes),
            initializer="glorot_uniform",
            name="kernel",
        )

    def call(self, inputs, freeze=None):
        kernel = ops.convert_to_tensor(self.kernel)
        if freeze is not None:
            kernel = ops.where(freeze, ops.stop_gradient(kernel), kernel)
        return ops.matmul(l2_normalize(inputs), l2_normalize(kernel, axis=0))

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (self.num_prototypes,)

    def get_config(self):
        return {**super().get_config(), "num_prototypes": self.num_prototypes}
