"""The `Algorithm` interface that `ContrastiveModel` delegates to.

An algorithm knows four things about a self-supervised method:

- its default heads (`default_projector`, `default_predictor`), faithful to the paper;
- whether it needs labels (SupCon), a predictor (BYOL, SimSiam, MoCo v3) or a momentum
  target encoder (MoCo, BYOL), declared as class attributes;
- the state it keeps on the model (a queue of keys for MoCo v2), created in `build`;
- its loss, computed in `compute_loss` from the per-view outputs of the online network
  (and the target network when it has one).

`ContrastiveModel` does everything generic: making views, running the backbone and heads
on every view, keeping the target network (`model.target_outputs`,
`model.update_target`). Adding a method is adding one file with an `Algorithm` subclass
registered under its name.
"""

from __future__ import annotations

import keras

from tfcontrast import _checks
from tfcontrast._registry import resolve

_REGISTRY: dict[str, type[Algorithm]] = {}


def register(cls):
    """Class decorator: makes an algorithm available by its `name` and serializable."""
    _REGISTRY[cls.name] = cls
    return keras.saving.register_keras_serializable(package="tfcontrast")(cls)


def multi_crop_names() -> list[str]:
    """The registered algorithms that train on views of several sizes (multi-crop)."""
    return sorted(name for name, cls in _REGISTRY.items() if cls.multi_crop)


class OptionError(ValueError):
    """An algorithm option out of its range; `option` names it (e.g. `"loss"`)."""

    def __init__(self, option: str, message: str):
        super().__init__(message)
        self.option = option


def check_option(check, name: str, value, owner: str, *args, **kwargs):
    """`check(name, value, owner, *args, **kwargs)` (a `tfcontrast._checks` function),
    its `ValueError` raised as an `OptionError` naming the option `name`."""
    try:
        return check(name, value, owner, *args, **kwargs)
    except ValueError as error:
        raise OptionError(name, str(error)) from None


class Algorithm:
    """Base class of self-supervised and supervised-contrastive algorithms.

    Class attributes:
        name: registry name, e.g. `"simclr"`.
        needs_labels: `fit` must receive labels (SupCon).
        uses_predictor: the online branch ends with a predictor head.
        momentum_base: EMA momentum of the target network, or `None` for no target.
        momentum_final: momentum reached at the end of training on a cosine schedule
            (equal to `momentum_base` for a constant momentum).
        multi_crop: takes views of several sizes (multi-crop: global views, then
            smaller local ones), concatenated on the view axis, global views first.
        recipe_defaults: the settings this method trains with in
            `tfcontrast.models.recipes` (small images, from scratch, on a CPU) where they
            differ from `Recipe`'s field defaults; `"options"` holds constructor
            arguments (e.g. a temperature). Each value is chosen on a validation split
            and its reason written beside it.
    """

    name = ""
    needs_labels = False
    uses_predictor = False
    momentum_base: float | None = None
    momentum_final: float | None = None
    multi_crop = False
    recipe_defaults: dict = {}

    def __init__(self, **loss_kwargs):
        self.loss_kwargs = dict(loss_kwargs)

    @classmethod
    def recipe_options(cls, options: dict) -> dict:
        """The constructor arguments `tfcontrast.models.recipes` (AdamW) builds this
        algorithm with, given the recipe's `options`: a hook for a setting that depends
        on another option (the metric algorithm's loss options follow its loss).

        Example:

        ```python
        Metric.recipe_options({"loss": "proxy_anchor"})
        # {"loss": "proxy_anchor", "loss_options": {"lr_multiplier": 100.0, "alpha": 16.0}}
        ```
        """
        return options

    # -- heads ---------------------------------------------------------------------
    def default_projector(self):
        """The paper's projection head."""
        raise NotImplementedError

    def default_predictor(self):
        """The paper's prediction head (`None` for methods without one)."""
        return None

    # -- state and loss ------------------------------------------------------------
    def build(self, model, projection_dim: int):
        """Creates state kept on `model` (tracked, saved, updated in-graph)."""

    def compute_loss(self, model, outputs: dict, labels, training: bool = True):
        """Returns the scalar loss.

        Args:
            model: the `ContrastiveModel` (for its target network and state).
            outputs: dict with `"views"` `(B, V, H, W, C)`, `"features"` `(B, V, F)`,
                `"projection"` `(B, V, P)` and, with a predictor, `"prediction"`.
            labels: int labels `(B,)` or `None`.
            training: `False` in `evaluate` and validation: the loss must then leave
                every state (queues, targets, counters) unchanged.
        """
        raise NotImplementedError

    @property
    def uses_target(self) -> bool:
        return self.momentum_base is not None

    def get_config(self) -> dict:
        return dict(self.loss_kwargs)

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def __repr__(self):
        return f"{type(self).__name__}({self.get_config()})"


def names() -> list[str]:
    """Registered algorithm names."""
    return sorted(_REGISTRY)


def get_class(name: str) -> type[Algorithm]:
    """The registered class of algorithm `name` (not instantiated)."""
    if name not in _REGISTRY:
        raise ValueError(
            f"Unknown `algorithm`: {name!r}; expected one of {names()}."
            + _checks.did_you_mean(name, names())
        )
    return _REGISTRY[name]


def get(identifier) -> Algorithm:
    """Resolves an algorithm name, config dict or object."""
    return resolve(identifier, base=Algorithm, registry=_REGISTRY, argument="algorithm")
