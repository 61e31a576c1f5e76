"""LoRA fine-tuning of a pretrained backbone with Keras' own `enable_lora`.

Low-rank adaptation (Hu et al., "LoRA: Low-Rank Adaptation of Large Language Models",
ICLR 2022) replaces each adapted kernel `W` by `W + (alpha / r) A B` with `A` of shape
`(..., in, r)` and `B` of shape `(r, out)`, `B` initialised to zero so that the model
starts exactly where the pretrained one was. Only `A` and `B` train; `W` stays frozen.
Keras 3 implements this on `Dense`, `EinsumDense`, `Embedding` and the convolution layers
(`Conv1D`, `Conv2D`, `Conv3D`: for a conv kernel `(kh, kw, in, out)`, `A` is
`(kh, kw, in, r)` and `B` is `(r, out)`); `enable_lora` here calls `layer.enable_lora`
on every matching layer of a model and, by default, also freezes the rest of it (biases,
BatchNorm scales *and* BatchNorm moving statistics), so that fine-tuning on new data
changes nothing but the low-rank updates. That is what keeps the original task's
accuracy (see `examples/lora_finetuning.py`): a full fine-tune drifts every weight and
every BatchNorm statistic toward the new data and forgets.

Saving: Keras merges the low-rank update into the kernel when it saves
(`W + (alpha / r) A B` is stored as the kernel, `A` and `B` as zeros), and keeps
`lora_rank` in the layer config, so a reloaded `.keras` model computes the same outputs,
still has LoRA enabled, and fine-tuning can continue from the merged weights. Call
`enable_lora(model, rank)` again after loading to re-apply the freezing of biases and
BatchNorm (variable-level `trainable` flags are not part of a layer config).

Example:

```python
from tfcontrast.models import ContrastiveModel, enable_lora
from tfcontrast.layers import ProjectionHead, digits_augmentation

backbone = keras.saving.load_model("pretrained_backbone.keras")
n = enable_lora(backbone, rank=4)                     # LoRA on every Dense / Conv
model = ContrastiveModel(backbone, projector=ProjectionHead((256,), 64),
                         augmentation=digits_augmentation())
model.compile(optimizer=keras.optimizers.Adam(1e-3))
model.fit(new_images, epochs=20)                      # only the adapters (and the new
                                                      # projector) train
```
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence

import keras

from tfcontrast import _checks, _keras_compat

#: Layer classes adapted by default (all have `enable_lora` in Keras 3).
DEFAULT_TARGETS = ("Dense", "EinsumDense", "Conv1D", "Conv2D", "Conv3D")


def _matches(layer, target) -> bool:
    names = {cls.__name__ for cls in type(layer).__mro__}
    for t in target:
        if isinstance(t, str) and t in names:
            return True
        if isinstance(t, type) and isinstance(layer, t):
            return True
    return False


def lora_variables(model) -> list:
    """The LoRA weights (`lora_kernel_a`, `lora_kernel_b`) of every adapted layer."""
    variables = []
    for layer in _keras_compat.flatten_layers(model):
        if getattr(layer, "lora_enabled", False):
            variables += [layer.lora_kernel_a, layer.lora_kernel_b]
    return variables


def count_lora_parameters(model) -> int:
    """Number of scalar LoRA parameters in `model`."""
    total = 0
    for v in lora_variables(model):
        size = 1
        for d in v.shape:
            size *= int(d)
        total += size
    return total


def enable_lora(
    model,
    rank: int,
    target: Sequence[str | type] = DEFAULT_TARGETS,
    alpha: float | None = None,
    freeze_rest: bool = True,
) -> int:
    """Adds LoRA adapters to the matching layers of a built model.

    Args:
        model: a built Keras model or layer, typically a pretrained backbone.
        rank: rank `r` of the low-rank update (positive integer).
        target: layer class names (or classes) to adapt; a layer matches when it is an
            instance of one of them. Default: Dense, EinsumDense and Conv1D/2D/3D.
        alpha: LoRA scale numerator (`alpha / rank` multiplies `A B`); Keras' default
            (`rank`, i.e. a scale of 1) when `None`.
        freeze_rest: also freeze every other weight of `model`: the biases of adapted
            layers (made non-trainable) and every non-adapted layer that owns weights
            (BatchNorm, LayerNorm, ... set `trainable = False`, which in Keras 3 also
            freezes BatchNorm's moving statistics). With `False`, Keras' own behaviour:
            only the adapted kernels are frozen.

    Layers that already have LoRA enabled (e.g. after reloading a saved model) are
    kept as they are, so calling this again only re-applies `freeze_rest`.

    Returns:
        The number of LoRA parameters in `model`.

    Raises:
        ValueError: `rank` is not a positive integer, `model` is not built, or no layer
            matches `target`.
    """
    _checks.integer("rank", rank, "enable_lora", numpy_ints=False)
    if alpha is not None and not alpha > 0:
        raise ValueError(f"enable_lora: `alpha` must be positive; received {alpha!r}.")
    if isinstance(target, (str, type)):
        target = (target,)
    if not getattr(model, "built", False):
        raise ValueError(
            "enable_lora: `model` must be built (LoRA weights are shaped like its "
            "kernels); call it on data or `model.build(input_shape)` first."
        )
    adapted = []
    for layer in _keras_compat.flatten_layers(model):
        if layer is model and isinstance(model, keras.Model):
            continue
        if not _matches(layer, target) or not hasattr(layer, "enable_lora"):
            continue
        if not layer.built:
            continue
        if not getattr(layer, "lora_enabled", False):
            layer.enable_lora(rank, lora_alpha=alpha)
        adapted.append(layer)
    if not adapted:
        raise ValueError(
            f"enable_lora: no layer of `model` matches `target`={tuple(target)!r}; "
            f"expected layers with `enable_lora` such as {DEFAULT_TARGETS}."
        )
    if freeze_rest:
        adapted_ids = {id(layer) for layer in adapted}
        for layer in _keras_compat.flatten_layers(model):
            if id(layer) in adapted_ids:
                bias = getattr(layer, "bias", None)
                if bias is not None:
                    bias.trainable = False
            elif layer is not model and _keras_compat.own_trainable_variables(layer):
                layer.trainable = False
        if not isinstance(model, keras.Model) and id(model) not in adapted_ids:
            for v in _keras_compat.own_trainable_variables(model):
                v.trainable = False
    return count_lora_parameters(model)


@contextlib.contextmanager
def without_lora(model):
    """Context in which `model` computes with its base weights only (adapters off).

    The LoRA `B` matrices are set to zero inside the block and restored after it. Since
    the base weights never change during LoRA fine-tuning, this gives back the
    pretrained model exactly: one set of weights serves the original task (adapters
    off) and the new one (adapters on).

    Example:

    ```python
    with without_lora(backbone):
        old_task_features = backbone.predict(images)
    ```
    """
    layers = [
        layer
        for layer in _keras_compat.flatten_layers(model)
        if getattr(layer, "lora_enabled", False)
    ]
    saved = [layer.lora_kernel_b.numpy() for layer in layers]
    try:
        for layer in layers:
            layer.lora_kernel_b.assign(keras.ops.zeros(layer.lora_kernel_b.shape))
        yield model
    finally:
        for layer, value in zip(layers, saved):
            layer.lora_kernel_b.assign(value)


__all__ = [
    "DEFAULT_TARGETS",
    "count_lora_parameters",
    "enable_lora",
    "lora_variables",
    "without_lora",
]
