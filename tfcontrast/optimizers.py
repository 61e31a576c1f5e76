"""Optimizers and schedules for self-supervised training.

- `LARS`: layer-wise adaptive rate scaling (You et al., 2017), the optimizer of SimCLR,
  BYOL and Barlow Twins at large batch sizes, as a Keras 3 `Optimizer`.
- `warmup_cosine_decay`: linear warm-up then cosine decay, built on Keras'
  own `CosineDecay` (which has a warm-up phase).
- `cosine_momentum`: the EMA momentum schedule of BYOL and MoCo v3, rising from a base
  value to 1 along a half cosine.

Example:

```python
steps = epochs * steps_per_epoch
lr = tfcontrast.optimizers.warmup_cosine_decay(0.3 * batch_size / 256, steps,
                                               warmup_steps=10 * steps_per_epoch)
model.compile(optimizer=tfcontrast.optimizers.LARS(lr, weight_decay=1e-6))
```
"""

from __future__ import annotations

import math

import keras
from keras import ops

from tfcontrast import _checks, _keras_compat


@keras.saving.register_keras_serializable(package="tfcontrast")
class LARS(keras.optimizers.Optimizer):
    """SGD with momentum and layer-wise adaptive learning rates.

    For a weight `w` with gradient `g`:

        g' = g + weight_decay * w
        trust = eta * ||w|| / ||g'||         (1 where either norm is zero)
        v <- momentum * v + trust * g'
        w <- w - lr * v

    Following SimCLR and BYOL, weights of rank <= 1 (biases, BatchNorm scale and offset)
    are excluded from both the adaptation (`trust = 1`) and the weight decay, so they
    get plain SGD with momentum.

    Args:
        learning_rate: float or `keras.optimizers.schedules.LearningRateSchedule`.
        momentum: momentum of the velocity (0.9).
        weight_decay: L2 coefficient inside the trust ratio (e.g. 1e-6 for SimCLR).
        eta: trust coefficient (0.001).
        nesterov: use Nesterov momentum.
    """

    def __init__(
        self,
        learning_rate=0.1,
        momentum: float = 0.9,
        weight_decay: float = 0.0,
        eta: float = 0.001,
        nesterov: bool = False,
        name="lars",
        **kwargs,
    ):
        super().__init__(learning_rate=learning_rate, name=name, **kwargs)
        for arg, value in (("weight_decay", weight_decay), ("eta", eta)):
            _checks.non_negative(arg, value, "LARS")
        _checks.in_range("momentum", momentum, "LARS", 0.0, 1.0, high_open=True)
        self.momentum = float(momentum)
        self.lars_weight_decay = float(weight_decay)
        self.eta = float(eta)
        self.nesterov = bool(nesterov)

    def build(self, variables):
        if self.built:
            return
        super().build(variables)
        self.velocities = self.add_optimizer_variables(variables, "velocity")

    @staticmethod
    def _adapted(variable) -> bool:
        return len(variable.shape) > 1

    def update_step(self, gradient, variable, learning_rate):
        lr = ops.cast(learning_rate, variable.dtype)
        g = ops.cast(gradient, variable.dtype)
        v = self.velocities[_keras_compat.variable_index(self, variable)]
        if self._adapted(variable):
            w = ops.convert_to_tensor(variable)
            if self.lars_weight_decay:
                g = g + self.lars_weight_decay * w
            w_norm = ops.sqrt(ops.sum(ops.square(w)))
            g_norm = ops.sqrt(ops.sum(ops.square(g)))
            trust = ops.where(
                ops.logical_and(w_norm > 0, g_norm > 0),
                self.eta * w_norm / ops.maximum(g_norm, 1e-12),
                ops.ones_like(w_norm),
            )
            g = g * trust
        momentum = ops.cast(self.momentum, variable.dtype)
        self.assign(v, momentum * v + g)
        step = momentum * v + g if self.nesterov else v
        self.assign_sub(variable, lr * step)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "momentum": self.momentum,
                "weight_decay": self.lars_weight_decay,
                "eta": self.eta,
                "nesterov": self.nesterov,
            }
        )
        return config


def warmup_cosine_decay(
    peak_learning_rate: float, total_steps: int, warmup_steps: int = 0, final_fraction: float = 0.0
):
    """Linear warm-up from 0 to `peak_learning_rate`, then cosine decay.

    Returns Keras' `CosineDecay` configured with its warm-up phase: the rate rises
    linearly over `warmup_steps`, then decays along a half cosine to
    `final_fraction * peak_learning_rate` at `total_steps`.
    """
    if total_steps <= 0 or not 0 <= warmup_steps < total_steps:
        raise ValueError(
            "warmup_cosine_decay: expected 0 <= `warmup_steps` < `total_steps`; received "
            f"warmup_steps={warmup_steps}, total_steps={total_steps}."
        )
    return keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=0.0 if warmup_steps else peak_learning_rate,
        decay_steps=total_steps - warmup_steps,
        alpha=final_fraction,
        warmup_target=peak_learning_rate if warmup_steps else None,
        warmup_steps=warmup_steps,
    )


def cosine_momentum(step, total_steps, base: float = 0.996, final: float = 1.0):
    """EMA momentum rising from `base` to `final` on a half cosine (BYOL).

    `tau(k) = final - (final - base) * (cos(pi * k / K) + 1) / 2`; `step` may be a
    tensor. Returns `base` everywhere when `total_steps` is not positive.
    """
    # Variables (optimizer.iterations) read as tensors first: casting a Variable inside a
    # JAX-traced train step fails.
    step = ops.cast(ops.convert_to_tensor(step), "float32")
    total = ops.cast(ops.convert_to_tensor(total_steps), "float32")
    progress = ops.where(total > 0, ops.minimum(step / ops.maximum(total, 1.0), 1.0), 0.0)
    return final - (final - base) * (ops.cos(math.pi * progress) + 1.0) / 2.0
