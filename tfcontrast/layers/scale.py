"""`LogitScale`: the learnable logit scale (and bias) of CLIP / SigLIP losses.

A `keras.losses.Loss` is not tracked by a model, so a variable it owned would never
reach the optimizer. The learnable parameters of `CLIPLoss` and `SigLIPLoss` therefore
live in this small layer. The loss reads them; the *model* must own the layer so that
`fit` trains it. Either attach it (`model.logit_scale = loss.logit_scale`) or put it in
the functional graph, where it passes its input through unchanged.
"""

from __future__ import annotations

import math

import keras
from keras import ops

from tfcontrast import _checks


@keras.saving.register_keras_serializable(package="tfcontrast")
class LogitScale(keras.layers.Layer):
    """Learnable logit scale `s = exp(log_scale)` and optional bias `b`.

    `scale` is parameterised in log space (as in CLIP and SigLIP), so it stays positive,
    and is clipped at `max_scale` when given (CLIP clips at 100). Calling the layer
    returns its input unchanged: it can sit anywhere in a functional model just to be
    owned (and trained, and saved) by it.

    Args:
        init_scale: initial value of `s` (> 0), e.g. `1 / 0.07` for CLIP, `10` for SigLIP.
        init_bias: initial `b` (SigLIP: -10), or `None` for no bias variable.
        max_scale: upper clip of `s`, or `None`.

    Example:

    ```python
    loss = tfcontrast.losses.CLIPLoss(learnable_temperature=True)
    model.logit_scale = loss.logit_scale      # the model now trains it
    model.compile(optimizer="adam", loss=loss)
    ```
    """

    def __init__(
        self,
        init_scale: float = 1.0 / 0.07,
        init_bias: float | None = None,
        max_scale: float | None = None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.init_scale = _checks.positive("init_scale", init_scale, "LogitScale")
        self.init_bias = None if init_bias is None else float(init_bias)
        self.max_scale = (
            None if max_scale is None else _checks.positive("max_scale", max_scale, "LogitScale")
        )
        self.log_scale = self.add_weight(
            shape=(),
            initializer=keras.initializers.Constant(math.log(self.init_scale)),
            dtype="float32",
            name="log_scale",
        )
        self.bias = None
        if self.init_bias is not None:
            self.bias = self.add_weight(
                shape=(),
                initializer=keras.initializers.Constant(self.init_bias),
                dtype="float32",
                name="bias",
            )
        self.built = True

    @property
    def scale(self):
        """The current scale `exp(log_scale)`, clipped at `max_scale`."""
        log_scale = ops.cast(self.log_scale, "float32")
        if self.max_scale is not None:
            log_scale = ops.minimum(log_scale, math.log(self.max_scale))
        return ops.exp(log_scale)

    def call(self, inputs):
        return inputs

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "init_scale": self.init_scale,
                "init_bias": self.init_bias,
                "max_scale": self.max_scale,
            }
        )
        return config
