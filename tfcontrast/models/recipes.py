"""Recipes: the settings that turn a set of images into a trained `ContrastiveModel`.

A `Recipe` holds every choice of a training run that is not the data: the algorithm and
its options (temperature, queue size), the backbone and its width, the heads, the
augmentation preset, the optimiser, batch size and length of training, and which
representation is served. `tfcontrast train` and `benchmarks/bench_quality.py` build and
train their models through this module, so what the benchmark measures is what the
command line runs.

Defaults come in four layers, later ones winning:

1. `Recipe`'s field defaults: small images trained from scratch on a CPU;
2. the algorithm's own `recipe_defaults` (each algorithm module declares them next to
   its loss, so adding a method never touches this file);
3. the kind of images (`IMAGE_KINDS`: glyphs such as digits, small photos, photos), when
   the recipe is made for them with `for_images`: the method and the settings chosen on a
   validation split of that kind;
4. what the user sets (`Recipe.for_algorithm("byol", learning_rate=1e-3)`, or flags).

How each default was chosen (on a validation split cut from USPS's training images,
never on a test split) is written next to it and in `benchmarks/README.md`.

Example:

```python
from tfcontrast.models import recipes

recipe, why = recipes.for_images(x_train)     # the method and settings for these images
model, note = recipes.build_model(recipe, x_train.shape[1:], sample=x_train)
print(why, note, sep="\n")                     # which recipe, augmentation, backbone, and why
recipes.compile_model(model, recipe, num_examples=len(x_train))
recipes.fit(model, recipe, x_train)
```

`Recipe.for_algorithm("simclr")` gives one algorithm's recipe whatever the images.
"""

from __future__ import annotations

import dataclasses
import inspect
import math
import os
import time

import numpy as np

from tfcontrast import _checks
from tfcontrast.models import algorithms as algorithms_lib
from tfcontrast.models import backbones as backbones_lib


class RecipeError(ValueError):
    """A setting out of its range; `setting` names it (`"epochs"`, `"options.temperature"`)."""

    def __init__(self, setting: str, message: str):
        super().__init__(message)
        self.setting = setting


@dataclasses.dataclass(frozen=True)
class Recipe:
    """Every setting of a training run but the data.

    Attributes:
        algorithm: a registered algorithm name (`tfcontrast.models.algorithms.names()`).
        options: keyword arguments of the algorithm (e.g. `{"temperature": 0.2}`).
        backbone: a backbone name (`tfcontrast.models.backbones.names()`: the
            small-image ResNet-18 and ConvNet, and every `keras.applications` model such
            as `"ResNet50"` or `"EfficientNetV2B0"`), the path of a KerasHub preset
            directory (an image backbone with its weights; needs keras-hub), or
            `"auto"`: `choose_backbone` picks one from the image size.
        width: the base width of a small-image backbone (`None`: the recipe's width for
            that backbone, `RECIPE_WIDTHS`, else the backbone's own default).
        weights: weights of a `keras.applications` backbone: `None` (from scratch),
            `"imagenet"` or the path of a weights file.
        freeze_backbone: train the heads only, the backbone's weights (and BatchNorm
            statistics) frozen...
        unfreeze_after: ...for this many epochs, then the whole network (`None`: frozen
            for the whole run).
        lora_rank: fine-tune a pretrained backbone (`weights`) through rank-`r` LoRA
            adapters on its Dense and convolution kernels, every other backbone weight
            (and BatchNorm statistic) frozen (`tfcontrast.models.enable_lora`); `None`
            for none.
        augmentation: an augmentation preset name or `"auto"`
            (`tfcontrast.layers.augmentation.preset_names()`).
        local_views: multi-crop: this many small local crops besides the two global
            views (`tfcontrast.layers.augmentation.multi_crop_preset`), for the
            algorithms that take views of several sizes (DINO, SwAV, SimCLR, SupCon,
            metric); 0 for two views of the image's size.
        local_size: side of the local crops in pixels (`None`:
            `tfcontrast.layers.augmentation.default_local_crops`, DINO's ratio of the
            image's side, 96 / 224, but never below 16 px or the image's side). On 16 px
            digits (USPS validation split, DINO, 4 local crops) crops resized to 7, 10 or
            12 px did worse than two views; crops kept at 16 px were level at 1-NN and
            slightly above at 10 labels per class (0.922 and 0.931 against 0.917 and
            0.924, two seeds): small images have no resolution to spare.
        local_scale: `(min, max)` fraction of the view's area a local crop covers
            (`None`: by the image's size, DINO's (0.05, 0.4), or (0.3, 0.6) on images of
            at most 64 px, as in the 16 px runs above).
        hidden_dim: hidden width of the projection (and prediction) head; the heads keep
            the algorithm's depth and BatchNorm placement at this width.
        projection_dim: output width of the projection head.
        learning_rate: peak learning rate of AdamW (5% linear warm-up, cosine decay).
        weight_decay: AdamW's decoupled weight decay.
        batch_size: global batch size (with `per_class`, `classes_per_batch` x
            `per_class`).
        classes_per_batch, per_class: P x K batches for the supervised algorithms:
            each batch holds `classes_per_batch` (P) classes drawn at random with
            `per_class` (K) images of each (`tfcontrast.data.class_balanced`), so every
            anchor has K - 1 positives of its own image's class whatever the number of
            classes; set both, or neither for batches drawn at random. An epoch is
            still `len(x)` images (or `steps_per_epoch` batches).
        epochs: epochs of training; `None` takes enough epochs for `steps` optimisation
            steps (between `min_epochs` and `max_epochs` passes over the data), or for
            `time_budget`.
        time_budget: minutes of training: `within_budget` times a few training steps of
            the model on this machine and sets the epochs that fit (instead of `steps`);
            `None` for the recipe's steps. Excludes `epochs`.
        steps_per_epoch: batches in an epoch; `None` for one pass over the images.
            On a large collection it gives the progress line, the monitors and the
            backups an epoch of a chosen length; each epoch takes the next batches of
            the reshuffled stream. Then `epochs=None` means `steps / steps_per_epoch`
            epochs (at least one): `min_epochs` and `max_epochs` bound passes over the
            data, which these epochs are not.
        steps: target number of optimisation steps when `epochs` is `None`.
        min_epochs, max_epochs: bounds on the epochs derived from `steps`.
        serve: `"backbone"` or `"projector"`: the representation `call` returns.
        online_probe: train an online linear probe on the backbone features from the
            labels given to `fit` (`ContrastiveModel(online_probe_classes=...)`), for
            any algorithm; its accuracy is in the training logs.
    """

    algorithm: str = "simclr"
    options: dict = dataclasses.field(default_factory=dict)
    backbone: str = "auto"
    width: int | None = None
    weights: str | None = None
    freeze_backbone: bool = False
    unfreeze_after: int | None = None
    lora_rank: int | None = None
    augmentation: str = "auto"
    local_views: int = 0
    local_size: int | None = None
    local_scale: tuple[float, float] | None = None
    hidden_dim: int = 256
    projection_dim: int = 64
    learning_rate: float = 2e-3
    weight_decay: float = 0.0
    batch_size: int = 256
    classes_per_batch: int | None = None
    per_class: int | None = None
    epochs: int | None = None
    steps_per_epoch: int | None = None
    steps: int = 3000
    min_epochs: int = 20
    max_epochs: int = 200
    time_budget: float | None = None
    serve: str = "backbone"
    online_probe: bool = False

    @classmethod
    def for_algorithm(cls, algorithm: str = "simclr", **overrides) -> Recipe:
        """The recipe of `algorithm`: field defaults, then the algorithm's
        `recipe_defaults`, then `overrides` (`None` values are ignored; `options` are
        merged key by key)."""
        try:
            algorithm_class = algorithms_lib.get_class(algorithm)
        except ValueError as error:
            raise RecipeError("algorithm", str(error)) from None
        settings = dict(algorithm_class.recipe_defaults)
        options = dict(settings.pop("options", {}))
        overrides = {k: v for k, v in overrides.items() if v is not None}
        options.update(overrides.pop("options", {}) or {})
        settings.update(overrides)
        if (
            "batch_size" not in overrides
            and settings.get("per_class")
            and settings.get("classes_per_batch")
        ):
            # P x K batches: the batch size follows from them unless it is set too.
            settings["batch_size"] = int(settings["classes_per_batch"]) * int(settings["per_class"])
        unknown = sorted(set(settings) - {f.name for f in dataclasses.fields(cls)})
        if unknown:
            raise RecipeError(unknown[0], f"Recipe: unknown setting(s) {unknown}.")
        recipe = cls(algorithm=algorithm, options=options, **settings)
        recipe.check()
        return recipe

    def check(self) -> None:
        """Raises a `RecipeError` (a ValueError) naming the first setting out of its range."""
        try:
            algorithm_class = algorithms_lib.get_class(self.algorithm)
        except ValueError as error:
            raise RecipeError("algorithm", str(error)) from None
        accepted = set(inspect.signature(algorithm_class.__init__).parameters) - {"self"}
        for key in self.options:
            if key not in accepted:
                raise RecipeError(
                    f"options.{key}",
                    f"Recipe: algorithm {self.algorithm!r} has no option {key!r}; its options "
                    f"are {sorted(accepted) or 'none'}.",
                )
        try:  # the values: the algorithm checks its own arguments
            algorithm_class(**self.options)
        except ValueError as error:
            option = getattr(error, "option", None)
            if option is None and len(self.options) == 1:
                option = next(iter(self.options))
            raise RecipeError(f"options.{option}" if option else "options", str(error)) from None
        self._check_settings()

    def _check_settings(self) -> None:
        from tfcontrast.layers import augmentation as augmentation_lib

        if os.path.isdir(self.backbone) and not backbones_lib.is_known(self.backbone):
            raise RecipeError(
                "backbone",
                f"Recipe: `backbone` {self.backbone!r} is a directory without model.keras (a "
                "run of `tfcontrast train`) or config.json (a KerasHub preset).",
            )
        for name, known, ok in (
            ("backbone", backbones_lib.names(), backbones_lib.is_known),
            ("augmentation", augmentation_lib.preset_names(), None),
        ):
            value = getattr(self, name)
            if value != "auto" and not (ok(value) if ok else value in known):
                also = ", or a KerasHub preset directory" if name == "backbone" else ""
                raise RecipeError(
                    name,
                    f"Recipe: unknown `{name}` {value!r}; expected 'auto' or one of {known}{also}."
                    + _checks.did_you_mean(value, known),
                )
        takes_weights = self.backbone == "auto" or backbones_lib.is_application(self.backbone)
        if self.weights is not None and not takes_weights:
            raise RecipeError(
                "weights",
                f"Recipe: `weights` ({self.weights!r}) need a keras.applications backbone "
                f"(or 'auto', which then prefers {backbones_lib.PRETRAINED} for photos); the "
                f"backbone is {self.backbone!r}.",
            )
        if self.width is not None and self.backbone not in ("auto", *RECIPE_WIDTHS):
            raise RecipeError(
                "width",
                f"Recipe: `width` applies to the small-image backbones, not {self.backbone}.",
            )
        if self.local_views and not algorithms_lib.get_class(self.algorithm).multi_crop:
            raise RecipeError(
                "local_views",
                f"Recipe: algorithm {self.algorithm!r} takes views of one size; local crops "
                f"(multi-crop) work with {algorithms_lib.multi_crop_names()}.",
            )
        self._check_local_crops()
        if self.unfreeze_after is not None and not self.freeze_backbone:
            raise RecipeError(
                "unfreeze_after", "Recipe: `unfreeze_after` needs `freeze_backbone=True`."
            )
        pretrained = self.weights is not None or backbones_lib.is_preset(self.backbone)
        if self.lora_rank is not None and (not pretrained or self.freeze_backbone):
            raise RecipeError(
                "lora_rank",
                "Recipe: `lora_rank` adapts a pretrained backbone (`weights`, or a KerasHub "
                f"preset; received {self.weights!r}) and trains the adapters, which "
                f"contradicts `freeze_backbone` ({self.freeze_backbone}).",
            )
        for name in (
            "batch_size",
            "classes_per_batch",
            "per_class",
            "steps",
            "min_epochs",
            "max_epochs",
            "width",
            "epochs",
            "steps_per_epoch",
            "unfreeze_after",
            "lora_rank",
            "local_views",
            "local_size",
            "hidden_dim",
            "projection_dim",
        ):
            least = {"batch_size": 2, "classes_per_batch": 2, "local_views": 0, "local_size": 2}
            least = least.get(name, 1)
            value = getattr(self, name)
            if value is not None and int(value) < least:
                raise RecipeError(name, f"Recipe: `{name}` must be >= {least}; received {value}.")
        self._check_class_batches()
        if self.time_budget is not None:
            if isinstance(self.time_budget, bool) or not (
                isinstance(self.time_budget, (int, float)) and 0 < self.time_budget < math.inf
            ):
                raise RecipeError(
                    "time_budget",
                    "Recipe: `time_budget` must be a positive number of minutes; received "
                    f"{self.time_budget!r}.",
                )
            if self.epochs is not None:
                raise RecipeError(
                    "time_budget",
                    f"Recipe: `time_budget` ({self.time_budget:g} minutes) sets the epochs; "
                    f"it contradicts `epochs` ({self.epochs}). Set one of them.",
                )
        if not self.learning_rate > 0:
            raise RecipeError(
                "learning_rate",
                f"Recipe: `learning_rate` must be > 0; received {self.learning_rate}.",
            )
        if not self.weight_decay >= 0:
            raise RecipeError(
                "weight_decay",
                f"Recipe: `weight_decay` must be >= 0; received {self.weight_decay}.",
            )
        if self.serve not in ("backbone", "projector"):
            raise RecipeError(
                "serve",
                f"Recipe: `serve` must be 'backbone' or 'projector'; received {self.serve!r}.",
            )

    def _check_local_crops(self) -> None:
        for name in ("local_size", "local_scale"):
            if getattr(self, name) is not None and not self.local_views:
                raise RecipeError(
                    name, f"Recipe: `{name}` shapes the local crops; it needs `local_views` >= 1."
                )
        if self.local_scale is None:
            return
        try:
            scale = _checks.fraction_range("local_scale", self.local_scale, "Recipe")
        except ValueError as error:
            raise RecipeError("local_scale", str(error)) from None
        object.__setattr__(self, "local_scale", scale)  # frozen: normalised once

    def _check_class_batches(self) -> None:
        pk = (self.classes_per_batch, self.per_class)
        if pk == (None, None):
            return
        if None in pk:
            missing = "per_class" if self.per_class is None else "classes_per_batch"
            raise RecipeError(
                missing, "Recipe: P x K batches need both `classes_per_batch` and `per_class`."
            )
        if not algorithms_lib.get_class(self.algorithm).needs_labels:
            raise RecipeError(
                "per_class",
                f"Recipe: P x K batches need labels; algorithm {self.algorithm!r} trains "
                "without them.",
            )
        if self.batch_size != self.classes_per_batch * self.per_class:
            raise RecipeError(
                "batch_size",
                f"Recipe: with P x K batches `batch_size` is classes_per_batch x per_class = "
                f"{self.classes_per_batch * self.per_class}; received {self.batch_size}.",
            )

    def check_labels(self, labels) -> None:
        """Raises a `RecipeError` when P x K batches cannot be drawn from `labels`: fewer
        classes than `classes_per_batch`, or a class with fewer images than `per_class`."""
        if self.per_class is None:
            return
        classes, counts = np.unique(np.asarray(labels), return_counts=True)
        if self.classes_per_batch > len(classes):
            raise RecipeError(
                "classes_per_batch",
                f"Recipe: `classes_per_batch`={self.classes_per_batch} but the labels hold "
                f"{len(classes)} classes.",
            )
        if self.per_class > counts.min():
            raise RecipeError(
                "per_class",
                f"Recipe: `per_class`={self.per_class} but class {classes[np.argmin(counts)]} "
                f"has {counts.min()} images.",
            )

    def replace(self, **changes) -> Recipe:
        recipe = dataclasses.replace(self, **changes)
        recipe.check()
        return recipe

    def epoch_steps(self, num_examples: int) -> int:
        """Batches in an epoch: `steps_per_epoch`, or one pass over `num_examples`."""
        if self.steps_per_epoch is not None:
            return int(self.steps_per_epoch)
        return max(1, math.ceil(int(num_examples) / self.batch_size))

    def epochs_for(self, num_examples: int) -> int:
        """`epochs`, or the epochs that give about `steps` steps on `num_examples` images."""
        if self.epochs is not None:
            return int(self.epochs)
        epochs = round(self.steps / self.epoch_steps(num_examples))
        if self.steps_per_epoch is not None:  # not passes over the data: no bounds
            return max(1, epochs)
        return int(min(self.max_epochs, max(self.min_epochs, epochs)))

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


# Widths the recipes train the small-image backbones at (from scratch, on a CPU). On the
# USPS validation split, SimCLR, 50 epochs: a ResNet-18 of width 8 reached 0.956 at 10
# labels per class in 114 s, width 16 0.960 in 248 s, the ConvNet of width 32 0.921 in
# 95 s; width 8 for 100 epochs (214 s) 0.973, above width 16 for 80 (416 s, 0.968).
RECIPE_WIDTHS = {"cifar_resnet18": 8, "resnet18": 8, "small_convnet": 32, "convnet": 32}

# The ResNet-18 halves the resolution three times: from 16 px it ends on 2x2 maps.
# Smaller images (scikit-learn's 8x8 digits) end on 1x1 there, and the 3-block ConvNet,
# which stops at a quarter of the side, did better on them (validation split of the
# digits: 0.977 against 0.968 at 10 labels per class, in half the time).
RESNET_MIN_SIDE = 16

# Photos this large or larger are worth an ImageNet-pretrained backbone: ImageNet models
# see 224 px; at 32 px and less their features are poor and their cost out of proportion.
PRETRAINED_MIN_SIDE = 64


def choose_backbone(image_shape, sample=None, weights=None) -> tuple[str, str | None, str]:
    """`(name, weights, reason)`: the backbone the recipes train on images of `image_shape`.

    Photos (colour images of at least `PRETRAINED_MIN_SIDE` px) get an ImageNet-pretrained
    `backbones.PRETRAINED` when its weights are at hand: the file `weights` names, or Keras'
    cache of a download made before. Without them (offline), and for every other image,
    the backbone trains from scratch: the small-image ResNet-18, or the small ConvNet below
    `RESNET_MIN_SIDE` px. `sample` (a few images) tells gray images stored with 3 channels.
    """
    height, width = (int(v) for v in image_shape[-3:-1])
    side = min(height, width)
    if side < RESNET_MIN_SIDE:
        return (
            "small_convnet",
            None,
            (
                f"{height}x{width} images are too small for a ResNet-18's three downsamplings "
                f"(< {RESNET_MIN_SIDE} px)"
            ),
        )
    scratch = f"a ResNet-18 for small images (3x3 stem, no max-pool) for {height}x{width} images"
    photos = image_kind(image_shape, sample)[0] != "glyphs"
    if not photos or side < PRETRAINED_MIN_SIDE:
        return "cifar_resnet18", None, scratch
    found = weights if weights not in (None, "imagenet") else backbones_lib.cached_weights()
    if found is not None:
        origin = "the file given" if found == weights else "Keras' cache"
        return (
            backbones_lib.PRETRAINED,
            found,
            (
                f"photos of {height}x{width}: pretrained first, {backbones_lib.PRETRAINED} with "
                f"ImageNet weights from {origin} ({found}); the heads train first on the frozen "
                "backbone, then the whole network fine-tunes"
            ),
        )
    return (
        "cifar_resnet18",
        None,
        (
            f"{scratch}, trained from scratch: no ImageNet weights at hand for photos of "
            f"{height}x{width} (Keras' cache has no {backbones_lib.PRETRAINED_FILE}; give a "
            f"weights file of {backbones_lib.PRETRAINED} with `weights` / --weights)"
        ),
    )


def resolve(recipe: Recipe, image_shape, sample=None, num_examples=None) -> tuple[Recipe, str]:
    """`(recipe, note)`: `recipe` with `backbone="auto"` replaced by `choose_backbone`'s
    choice, and the note saying which and why (empty when nothing was left to choose).

    A pretrained choice trains the heads first: the backbone is frozen for the first fifth
    of the epochs (`freeze_backbone`, `unfreeze_after`), unless the recipe sets those.
    `num_examples` sizes that fifth (`epochs_for`); without it, the fifth of `min_epochs`.

    Example:

    ```python
    recipe, note = recipes.resolve(recipes.Recipe.for_algorithm("simclr"), (32, 32, 3))
    recipe.backbone  # "cifar_resnet18"; on 96 px photos with weights at hand, EfficientNetV2B0
    ```
    """
    if recipe.backbone != "auto":
        return recipe, ""
    name, weights, reason = choose_backbone(image_shape, sample, recipe.weights)
    if recipe.weights is not None and weights is None:
        raise RecipeError(
            "weights",
            f"Recipe: `weights` ({recipe.weights!r}) are for a pretrained backbone, which "
            f"`backbone='auto'` takes for colour photos of at least {PRETRAINED_MIN_SIDE} px; "
            f"for these images it trains {name} from scratch. Name a keras.applications "
            "backbone to use the weights anyway.",
        )
    changes = {"backbone": name, "weights": weights}
    if weights is not None and not recipe.freeze_backbone and recipe.lora_rank is None:
        epochs = recipe.epochs_for(num_examples) if num_examples else recipe.min_epochs
        if epochs > 1:
            changes.update(freeze_backbone=True, unfreeze_after=max(1, epochs // 5))
    return recipe.replace(**changes), f"backbone: {name} ({reason})"


# What kind of images a data set holds, as the augmentation presets tell them apart
# (`tfcontrast.layers.augmentation.choose_preset`), and the recipe each kind trains with
# when the user names no algorithm: `algorithm`, then settings over the algorithm's own
# `recipe_defaults`. Every choice was made on a validation split cut from the training
# images of a real data set of that kind (`benchmarks/README.md`, "How the recipes were
# chosen"); the test splits only report.
@dataclasses.dataclass(frozen=True)
class ImageKind:
    """The default recipe of a kind of images; `reason` says how it was chosen.

    `settings` apply whichever algorithm trains; `options` (the algorithm's own, such as
    a temperature) only when it is the kind's `algorithm`.
    """

    algorithm: str
    settings: dict
    reason: str
    options: dict = dataclasses.field(default_factory=dict)


IMAGE_KINDS = {
    # USPS validation split: VICReg beat SimCLR at both budgets measured (50 epochs: 0.976
    # against 0.956 at 10 labels per class; ~3,000 steps: 0.982 against 0.973).
    "glyphs": ImageKind("vicreg", {}, "VICReg, chosen on a USPS validation split (16 px digits)"),
    # A validation split of cifar10_small's training images (8,000 / 2,000), about 6
    # minutes of training each, kNN (k = 20): SimCLR 0.436 against VICReg 0.353 at equal
    # steps; width 16 (fewer steps in the same time) 0.408; batch 128 (more steps) 0.433;
    # SimCLR at temperature 0.2, SimCLR v2's and MoCo v3's, 0.467 (1-NN 0.383 against
    # 0.379, linear probe 0.481 against 0.461, 10 labels per class 0.272 against 0.277).
    # Width 8, batch 256 and the ~3,000 steps stay the recipe's own.
    "small_natural": ImageKind(
        "simclr",
        {},
        "SimCLR at temperature 0.2, chosen on a validation split of CIFAR-10 photos (32 px)",
        options={"temperature": 0.2},
    ),
    # No photo set above 64 px is at hand: the small photos' method, and pretrained
    # weights first (`choose_backbone`).
    "natural": ImageKind(
        "simclr",
        {},
        "SimCLR at temperature 0.2 as for small photos (no larger photo set was at hand "
        "to choose on)",
        options={"temperature": 0.2},
    ),
}


def image_kind(image_shape, sample=None) -> tuple[str, str]:
    """`(kind, reason)`: the kind of images of `image_shape` (a key of `IMAGE_KINDS`)."""
    from tfcontrast.layers import augmentation as augmentation_lib

    return augmentation_lib.choose_preset(image_shape, sample)


def for_images(images, algorithm=None, num_examples=None, **overrides) -> tuple[Recipe, str]:
    """`(recipe, note)`: the recipe for training on `images`, and lines saying which
    recipe and why.

    Args:
        images: the images `(N, H, W, C)` (a few hundred are looked at), or their shape
            `(H, W, C)`.
        algorithm: a registered algorithm name; `None` takes the kind of images' own
            (`IMAGE_KINDS`).
        num_examples: the number of training images (default: `len(images)`), which sizes
            the epochs of a pretrained backbone's heads-first stage.
        **overrides: `Recipe` settings (`options=` for the algorithm's), over the kind's
            and the algorithm's defaults.

    Example:

    ```python
    recipe, why = recipes.for_images(x_train)             # photos: SimCLR; digits: VICReg
    recipe, why = recipes.for_images(x_train, "byol", learning_rate=1e-3)
    ```
    """
    shape = tuple(int(v) for v in np.shape(images)[-3:])
    sample = images if np.ndim(images) == 4 else None
    if num_examples is None and sample is not None:
        num_examples = len(images)
    kind, why = image_kind(shape, sample)
    defaults = IMAGE_KINDS[kind]
    chosen = algorithm or defaults.algorithm
    settings = {**defaults.settings, **{k: v for k, v in overrides.items() if v is not None}}
    if chosen == defaults.algorithm:  # the kind's options are for its own method only
        settings["options"] = {**defaults.options, **(settings.get("options") or {})}
    recipe = Recipe.for_algorithm(chosen, **settings)
    note = f"images: {why}"
    if algorithm is None:
        note += f"; their recipe: {defaults.reason}"
    recipe, backbone_note = resolve(recipe, shape, sample, num_examples)
    return recipe, "\n".join(filter(None, (note, backbone_note)))


def _projector(algorithm, recipe):
    """The algorithm's projector shape (depth, BatchNorm after the hidden layers and the
    output) at the recipe's widths: SimSiam, MoCo v3 and Barlow Twins rely on their
    BatchNorm placements to avoid collapse, whatever the width."""
    from tfcontrast.layers import ProjectionHead

    config = algorithm.default_projector().get_config()
    config.update(
        hidden_dims=[recipe.hidden_dim] * len(config["hidden_dims"]),
        output_dim=recipe.projection_dim,
    )
    config.pop("name", None)
    return ProjectionHead.from_config(config)


def _predictor(algorithm, recipe):
    """The predictor at the recipe's widths: `hidden_dim -> projection_dim`.

    SimSiam's 4x bottleneck (2048 -> 512 -> 2048) is for 2048-d projections: at the
    recipes' 64-d one it leaves a rank-16 predictor. On the USPS validation split
    (50 epochs) SimSiam scored 0.797 at 10 labels per class with that 16-wide bottleneck
    (pixels 0.821) and 0.903 with a 256-wide hidden layer.
    """
    from tfcontrast.layers import PredictionHead

    return PredictionHead(recipe.hidden_dim, recipe.projection_dim)


def build_model(recipe: Recipe, image_shape, seed: int = 0, sample=None, labels=None):
    """The `ContrastiveModel` of `recipe` for images of `image_shape` `(H, W, C)`.

    Args:
        recipe: the settings.
        image_shape: `(H, W, C)`.
        seed: seed of the augmentation layers.
        sample: optional images, used by `augmentation="auto"` to recognise gray images
            stored with 3 channels.
        labels: optional training labels: an algorithm with a `num_classes` option
            (the metric algorithm's proxy losses) gets their number of classes, and
            so does the online probe.

    Returns:
        `(model, note)`: the model and lines saying which augmentation preset (and, for
        `backbone="auto"`, which backbone) it uses and why.
    """
    from tfcontrast.layers import augmentation as augmentation_lib
    from tfcontrast.models.contrastive_model import ContrastiveModel

    image_shape = tuple(int(v) for v in image_shape[-3:])
    recipe.check()
    algorithm_class = algorithms_lib.get_class(recipe.algorithm)
    options = dict(recipe.options)
    takes_classes = "num_classes" in inspect.signature(algorithm_class.__init__).parameters
    if takes_classes and options.get("num_classes") is None and labels is not None:
        options["num_classes"] = int(np.max(labels)) + 1
    algorithm = algorithm_class(**algorithm_class.recipe_options(options))
    name, reason = recipe.augmentation, "as asked"
    if name == "auto":
        name, reason = augmentation_lib.choose_preset(image_shape, sample)
        reason = f"chosen because {reason}"
    augment = augmentation_lib.preset(name, image_shape, seed=seed)
    note = f"augmentation: {name}, {augmentation_lib.describe_preset(name)} ({reason})"
    if recipe.local_views:
        crops = {"local_size": recipe.local_size, "local_scale": recipe.local_scale}
        try:
            augment = augmentation_lib.multi_crop_preset(
                name,
                image_shape,
                recipe.local_views,
                seed=seed,
                **{key: value for key, value in crops.items() if value is not None},
            )
        except ValueError as error:  # crops larger than the images
            raise RecipeError("local_size", str(error)) from None
        local = augment.augmenters[-1].layers[-1]
        note += (
            f"\nmulti-crop: 2 global views and {recipe.local_views} local crops of "
            f"{local.height}x{local.width} from {local.scale[0]:g}-{local.scale[1]:g} of the view"
        )
    recipe, backbone_note = resolve(recipe, image_shape, sample)
    if backbone_note:
        note += "\n" + backbone_note
    backbone, width = recipe.backbone, recipe.width
    if backbones_lib.is_saved(backbone):
        note += (
            f"\nbackbone: the pre-trained backbone of {backbone} "
            f"({'frozen' if recipe.freeze_backbone else 'fine-tuned'} here)"
        )
    if width is None:
        width = RECIPE_WIDTHS.get(backbone)
    backbone_kwargs = {} if width is None else {"width": width}
    # Local crops are smaller than the images: the backbone then takes any size.
    input_shape = (None, None, image_shape[-1]) if recipe.local_views else image_shape
    try:
        network = backbones_lib.get(
            backbone, input_shape, weights=recipe.weights, **backbone_kwargs
        )
    except backbones_lib.WeightsError as error:
        raise RecipeError("weights", str(error)) from None
    except ValueError as error:  # e.g. images smaller than the application takes
        raise RecipeError("backbone", str(error)) from None
    if recipe.lora_rank is not None:
        from tfcontrast.models.lora import enable_lora

        adapters = enable_lora(network, recipe.lora_rank)
        note += (
            f"\nLoRA rank {recipe.lora_rank}: {adapters:,} adapter weights train in the backbone"
        )
    if recipe.freeze_backbone:
        network.trainable = False
        note += "\nbackbone frozen" + (
            f" for {recipe.unfreeze_after} epochs" if recipe.unfreeze_after is not None else ""
        )
    probe_classes = None
    if recipe.online_probe:
        if labels is None:
            raise RecipeError("online_probe", "Recipe: `online_probe` needs the labels.")
        probe_classes = max(2, int(np.max(labels)) + 1)
    model = ContrastiveModel(
        network,
        online_probe_classes=probe_classes,
        projector=_projector(algorithm, recipe),
        predictor=_predictor(algorithm, recipe) if algorithm.uses_predictor else None,
        algorithm=algorithm,
        augmentation=augment,
        serve=recipe.serve,
    )
    return model, note


# The share of a time budget given to the optimisation steps timed by `within_budget`; the
# rest is for what an epoch does besides (monitors, backups, the heads-first stage's
# second compilation) and for timing noise. At 0.9, `tfcontrast train` on cifar10_small
# trained 2.4% over a 5-minute budget and 4.4% over a 20-minute one (its epochs cost about
# 16% more than their timed steps); 0.85 leaves them inside.
BUDGET_MARGIN = 0.85


def within_budget(
    recipe: Recipe, x, y=None, probe_steps: int = 5, seed: int = 0, clock=time.perf_counter
):
    """`(recipe, note)`: `recipe` with the epochs that fit its `time_budget` on this
    machine (`time_budget` then None), and a line saying how they were counted.

    Builds a throwaway copy of the recipe's model, runs `probe_steps + 2` training steps
    of the whole network on `x`'s first images, takes the median of the step times after
    the first (which traces), and gives `BUDGET_MARGIN` of the budget, less the first
    step, to steps at that pace: at least one epoch, however short the budget. A recipe
    without a budget comes back unchanged.

    Args:
        recipe: the settings; `time_budget` in minutes.
        x: the training images (an array, or a `tfcontrast.data.ImageSource`).
        y: their labels (for the algorithms that need them).
        probe_steps: the step times measured are `probe_steps + 1`.
        seed: seed of the throwaway model.
        clock: the seconds counter the steps are timed with.

    Example:

    ```python
    recipe, why = recipes.for_images(x_train, time_budget=15)
    recipe, note = recipes.within_budget(recipe, x_train)  # recipe.epochs now set
    model, _ = recipes.build_model(recipe, x_train.shape[1:], sample=x_train)
    ```
    """
    if recipe.time_budget is None:
        return recipe, ""
    import keras

    streamed = hasattr(x, "batches")
    num_examples = len(x)
    needed = recipe.batch_size * (probe_steps + 2)
    if streamed:
        x, y = x.take(min(needed, num_examples)).arrays()
    x = np.asarray(x)[:needed]
    y = None if y is None else np.asarray(y)[: len(x)]
    model, _ = build_model(
        recipe.replace(freeze_backbone=False, unfreeze_after=None),
        x.shape[1:],
        seed=seed,
        sample=x,
        labels=y,
    )
    model.compile(optimizer=keras.optimizers.AdamW(1e-4))
    use_labels = model.algorithm.needs_labels or model.online_probe is not None

    class Clock(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            ends.append(clock())

    ends = []
    reps = max(1, math.ceil(needed / len(x)))  # a small data set: the same images again
    images = np.concatenate([x] * reps)[:needed]
    labels = None if y is None or not use_labels else np.concatenate([y] * reps)[:needed]
    start = clock()
    model.fit(
        images,
        labels,
        batch_size=recipe.batch_size,
        epochs=1,
        verbose=0,
        shuffle=False,
        callbacks=[Clock()],
    )
    step = float(np.median(np.diff(ends)))
    first = ends[0] - start  # tracing and the first step: the real run pays it again
    per_epoch = step * recipe.epoch_steps(num_examples)
    usable = BUDGET_MARGIN * 60 * recipe.time_budget - first
    epochs = max(1, int(usable // per_epoch))
    note = (
        f"time budget: {recipe.time_budget:g} minutes of training; a step takes "
        f"{1000 * step:.0f} ms here, so {epochs} epoch(s) of {recipe.epoch_steps(num_examples)} "
        f"steps fit in {BUDGET_MARGIN:.0%} of it"
    )
    return recipe.replace(epochs=epochs, time_budget=None), note


def optimizer(recipe: Recipe, num_examples: int):
    """The recipe's AdamW with its warm-up cosine schedule over the run's steps.

    For models the recipe does not build, e.g. a plain Keras model with a metric loss:

    ```python
    model.compile(optimizer=recipes.optimizer(recipe, len(x)), loss=TripletLoss())
    ```
    """
    import keras

    from tfcontrast.optimizers import warmup_cosine_decay

    steps = recipe.epoch_steps(num_examples) * recipe.epochs_for(num_examples)
    # 5% warm-up, at least one step unless the run has only one.
    warmup = min(max(1, steps // 20), steps - 1)
    schedule = warmup_cosine_decay(recipe.learning_rate, steps, warmup_steps=warmup)
    return keras.optimizers.AdamW(schedule, weight_decay=recipe.weight_decay)


def compile_model(model, recipe: Recipe, num_examples: int) -> None:
    """Compiles `model` with the recipe's `optimizer`."""
    model.compile(optimizer=optimizer(recipe, num_examples))


def fit(model, recipe: Recipe, x, y=None, callbacks=(), verbose=0, seed=0):
    """Trains `model` on images `x` (labels `y` are used only when the algorithm needs
    them, or for the online probe) for the recipe's epochs and batch size; returns the
    `History` (of the last stage, with `unfreeze_after`).

    `x` is an array of images, or a `tfcontrast.data.ImageSource` (then `y` is the
    source's labels): a source is streamed, decoded batch by batch and reshuffled every
    epoch from `seed`, so a collection of any size trains without being held in memory.
    With `steps_per_epoch`, arrays are streamed the same way (TensorFlow's `tf.data`).

    With `per_class` the batches are P x K (`tfcontrast.data.class_balanced`, drawn from
    `seed`), `recipe.epoch_steps(N)` of them per epoch.

    With `unfreeze_after=N`, the first N epochs train the heads on the frozen backbone;
    then the backbone is unfrozen and the model compiled again (a fresh optimiser whose
    warm-up and cosine decay span the remaining epochs) and training goes on from epoch N.
    """
    if (
        recipe.steps_per_epoch is not None
        and recipe.per_class is None
        and not hasattr(x, "batches")
    ):
        # Epochs that are not passes: the arrays are streamed like any source, so that
        # each epoch takes the next batches instead of Keras' array adapter running dry.
        from tfcontrast.data import ImageSource

        x, y = ImageSource.from_arrays(x, y), None
    streamed = hasattr(x, "batches")  # an ImageSource
    if streamed:
        if y is not None:
            raise ValueError("recipes.fit: pass `y` only with an array `x`; a source has labels.")
        y = x.labels
    num_examples = len(x)
    # `backbone="auto"` as `build_model` resolved it (a pretrained choice trains heads first).
    image_shape = x.image_shape if streamed else np.shape(x)[1:]
    recipe, _ = resolve(recipe, image_shape, None if streamed else x[:256], num_examples)
    epochs = recipe.epochs_for(num_examples)
    use_labels = model.algorithm.needs_labels or model.online_probe is not None
    stages = [epochs]
    if recipe.unfreeze_after is not None and recipe.unfreeze_after < epochs:
        stages = [recipe.unfreeze_after, epochs]
    steps = recipe.epoch_steps(num_examples)
    if recipe.per_class is not None:
        if streamed:
            batches = x.class_balanced(recipe.classes_per_batch, recipe.per_class, seed=seed)
        else:
            from tfcontrast.data import class_balanced

            batches = class_balanced(x, y, recipe.classes_per_batch, recipe.per_class, seed=seed)
        data = dict(x=batches, steps_per_epoch=steps, shuffle=False)
    elif streamed:
        # Repeated, with the epoch's length given: Keras then neither warns that the input
        # ran out nor loses the epoch count when an unreadable file was skipped.
        batches = x.batches(recipe.batch_size, seed=seed, labels=use_labels).repeat()
        data = dict(x=batches, steps_per_epoch=steps, shuffle=False)
    else:
        data = dict(x=x, y=y if use_labels else None, batch_size=recipe.batch_size)
    history, start = None, 0
    for stage, end in enumerate(stages):
        if stage:  # unfreeze: every weight trains from here on
            model.backbone.trainable = True
            remaining = recipe.replace(epochs=end - start)
            model.compile(optimizer=optimizer(remaining, num_examples))
        history = model.fit(
            **data,
            epochs=end,
            initial_epoch=start,
            verbose=verbose,
            callbacks=list(callbacks),
        )
        start = end
    return history


__all__ = [
    "IMAGE_KINDS",
    "RECIPE_WIDTHS",
    "ImageKind",
    "Recipe",
    "RecipeError",
    "build_model",
    "choose_backbone",
    "compile_model",
    "fit",
    "for_images",
    "image_kind",
    "optimizer",
    "resolve",
    "within_budget",
]
