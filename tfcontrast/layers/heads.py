"""Projection and prediction heads: the MLPs that sit on top of a backbone.

The projector maps backbone features to the space where the contrastive loss is
computed (SimCLR's `g`); the predictor maps one branch's projection to the other's
(BYOL, SimSiam, MoCo v3). Both are small MLPs with BatchNorm, configurable in depth and
width, and serialize with `keras.saving`.

Example:

```python
from tfcontrast.layers import ProjectionHead, PredictionHead

projector = ProjectionHead(hidden_dims=(2048,), output_dim=128)   # SimCLR v1
predictor = PredictionHead(hidden_dim=512, output_dim=2048)        # SimSiam
```
"""

from __future__ import annotations

from collections.abc import Sequence

import keras


def _check_dims(owner: str, name: str, dims) -> tuple[int, ...]:
    dims = tuple(int(d) for d in dims)
    if any(d <= 0 for d in dims):
        raise ValueError(f"{owner}: `{name}` must be positive integers; received {dims}.")
    return dims


@keras.saving.register_keras_serializable(package="tfcontrast")
class ProjectionHead(keras.layers.Layer):
    """MLP projector: `[Dense -> BatchNorm -> ReLU] x len(hidden_dims) -> Dense [-> BN]`.

    Args:
        hidden_dims: widths of the hidden layers (`()` gives a linear projector).
        output_dim: width of the projection.
        batch_norm: BatchNorm after each hidden Dense (SimCLR v2, BYOL, SimSiam...).
        output_batch_norm: BatchNorm (without scale and offset) after the last Dense,
            as in SimSiam and Barlow Twins' projector.
        activation: activation of the hidden layers.
        synchronized: BatchNorm statistics over the global batch under `tf.distribute`
            (`keras.layers.BatchNormalization(synchronized=True)`, TensorFlow backend;
            on JAX with `DataParallel` the statistics are global anyway). With the
            default `False` each replica normalises with its local batch, as in
            SimCLR's non-synchronized baseline.
    """

    def __init__(
        self,
        hidden_dims: Sequence[int] = (2048,),
        output_dim: int = 128,
        batch_norm: bool = True,
        output_batch_norm: bool = False,
        activation: str = "relu",
        synchronized: bool = False,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.hidden_dims = _check_dims(type(self).__name__, "hidden_dims", hidden_dims)
        self.output_dim = _check_dims(type(self).__name__, "output_dim", (output_dim,))[0]
        self.batch_norm = bool(batch_norm)
        self.output_batch_norm = bool(output_batch_norm)
        self.activation = activation
        self.synchronized = bool(synchronized)
        self.blocks = []
        for width in self.hidden_dims:
            self.blocks.append(keras.layers.Dense(width, use_bias=not self.batch_norm))
            if self.batch_norm:
                self.blocks.append(keras.layers.BatchNormalization(synchronized=self.synchronized))
            self.blocks.append(keras.layers.Activation(activation))
        self.blocks.append(keras.layers.Dense(self.output_dim, use_bias=not self.output_batch_norm))
        if self.output_batch_norm:
            self.blocks.append(
                keras.layers.BatchNormalization(
                    center=False, scale=False, synchronized=self.synchronized
                )
            )

    def build(self, input_shape):
        shape = tuple(input_shape)
        for block in self.blocks:
            if not block.built:
                block.build(shape)
            shape = block.compute_output_shape(shape)

    def call(self, x, training=None):
        for block in self.blocks:
            x = block(x, training=training)
        return x

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (self.output_dim,)

    def get_config(self):
        return {
            **super().get_config(),
            "hidden_dims": list(self.hidden_dims),
            "output_dim": self.output_dim,
            "batch_norm": self.batch_norm,
            "output_batch_norm": self.output_batch_norm,
            "activation": self.activation,
            "synchronized": self.synchronized,
        }


@keras.saving.register_keras_serializable(package="tfcontrast")
class PredictionHead(ProjectionHead):
    """MLP predictor `Dense -> BatchNorm -> ReLU -> Dense` (BYOL, SimSiam, MoCo v3).

    Args:
        hidden_dim: width of the bottleneck (4096 in BYOL, 512 in SimSiam).
        output_dim: width of the prediction (equal to the projection's).
    """

    def __init__(self, hidden_dim: int = 4096, output_dim: int = 256, **kwargs):
        kwargs.pop("hidden_dims", None)
        super().__init__(hidden_dims=(hidden_dim,), output_dim=output_dim, **kwargs)
        self.hidden_dim = self.hidden_dims[0]

    def get_config(self):
        config = super().get_config()
        config.pop("hidden_dims")
        return {**config, "hidden_dim": self.hidden_dim}
