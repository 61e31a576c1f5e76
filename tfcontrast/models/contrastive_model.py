"""`ContrastiveModel`: a backbone with projector and predictor heads, trained by `fit`.

The model delegates what differs between methods to an algorithm object
(`tfcontrast.models.algorithms`) and does the rest itself: it makes the views, runs the
backbone and heads on all of them, keeps the momentum target network of MoCo and BYOL,
and serves the embedding from `call`.
"""

from __future__ import annotations

import contextlib
import logging

import keras
import numpy as np
from keras import ops

from tfcontrast import _checks, _keras_compat
from tfcontrast._checks import integer_labels
from tfcontrast.models.algorithms import base as algorithms_lib
from tfcontrast.optimizers import cosine_momentum

logger = logging.getLogger("tfcontrast")


def _view_augmenter(augmentation, views: int):
    """`augmentation` (a layer applied `views` times, a list of layers, one per view, or
    a `ViewAugmenter`) as a `ViewAugmenter`."""
    from tfcontrast.layers.augmentation import ViewAugmenter

    if isinstance(augmentation, ViewAugmenter):
        return augmentation
    if isinstance(augmentation, (list, tuple)):
        return ViewAugmenter(list(augmentation))
    return ViewAugmenter(augmentation, views=views)


def _clone_frozen(layer, name):
    """A non-trainable copy of `layer` with the same weights (for target networks)."""
    try:
        clone = (
            keras.models.clone_model(layer)
            if isinstance(layer, keras.Model)
            else layer.__class__.from_config(layer.get_config())
        )
    except Exception as error:  # noqa: BLE001 - re-raised with the fix to apply
        raise ValueError(
            f"ContrastiveModel: cannot copy `{name}` for the momentum target network "
            f"({error}). Use a Functional or Sequential backbone, or a layer with "
            "`get_config`."
        ) from error
    return clone


@keras.saving.register_keras_serializable(package="tfcontrast")
class ContrastiveModel(keras.Model):
    """A self-supervised (or supervised-contrastive) embedding model.

    Trained with plain `compile` + `fit` on batches of images `(B, H, W, C)` (views are
    made by `augmentation` inside the model) or of ready-made views `(B, V, H, W, C)`
    (made upstream, e.g. by `tfcontrast.data.multiview`). Labels are optional, except for
    `algorithm="supcon"`.

    `call(images)` returns the representation to serve: the backbone's features by
    default, or the projector's output with `serve="projector"`. During training on
    views, `call` returns a dict of per-view outputs that `compute_loss` consumes.

    Args:
        backbone: a Keras model mapping images to feature vectors (e.g.
            `tfcontrast.models.backbones.cifar_resnet18()` or any `keras.applications`
            model with `include_top=False, pooling="avg"`).
        projector: projection head; the algorithm's default when `None`.
        predictor: prediction head; built by default for algorithms that need one.
        algorithm: `"simclr"`, `"supcon"`, `"moco_v2"`, `"moco_v3"`, `"byol"`,
            `"simsiam"`, `"vicreg"`, `"barlow_twins"` or an `Algorithm` object.
        augmentation: a layer that augments a batch of images, applied once per view,
            or a list of layers, one per view (asymmetric pairs such as BYOL's), or the
            name of a preset (`"auto"`, `"glyphs"`, `"small_natural"`, `"natural"`,
            `"none"`; see `tfcontrast.layers.augmentation.preset`), built for the image
            shape when the model is built. `None` when views come ready-made.
        views: number of views made by `augmentation` (when it is a single layer).
        serve: `"backbone"` or `"projector"`: what `call` returns for images.
        view_batches: how the views of a step go through the backbone and heads.
            `"joint"` (default): all `B * V` images in one batch, so BatchNorm takes its
            statistics over every view (SimCLR's reference code). `"per_view"`: one
            batch of `B` per view, statistics per view (the reference code of BYOL,
            SimSiam and MoCo v3, and TensorFlow Similarity); it needs a known number of
            views. On CPUs the smaller batches can run faster through the
            convolutions (measured in `benchmarks/bench_fit_speed.py`).
        online_probe_classes: with a number of classes `C`, an online linear probe: a
            `Dense(C)` layer (`model.online_probe`) on the backbone features of every
            view (the global views only, under multi-crop: it classifies whole images,
            as solo-learn's online classifier sees the large crops only), behind a
            stop-gradient, trained by `fit(x, y)` from the labels (its
            cross entropy is added to the loss; it moves no other weight) and reported
            as `online_probe_accuracy` in the logs of `fit` and `evaluate` (on views).
            Without labels it is left untrained. It is never part of the served
            embedding; classify images with `model.online_probe(model.backbone(x))`.

    Example:

    ```python
    from tfcontrast.models import ContrastiveModel, backbones
    from tfcontrast.layers import ProjectionHead

    model = ContrastiveModel(backbones.small_convnet((8, 8, 1)),
                             projector=ProjectionHead((256,), 64),
                             algorithm="simclr", augmentation=my_augmentation)
    model.compile(optimizer="adam")
    model.fit(images, epochs=50, batch_size=256)
    embeddings = model.predict(images)          # backbone features
    ```
    """

    def __init__(
        self,
        backbone,
        projector=None,
        predictor=None,
        algorithm="simclr",
        augmentation=None,
        views: int = 2,
        serve: str = "backbone",
        view_batches: str = "joint",
        online_probe_classes: int | None = None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if not isinstance(backbone, keras.layers.Layer):
            raise ValueError(
                f"ContrastiveModel: `backbone` must be a Keras model or layer; received "
                f"{type(backbone).__name__}."
            )
        if serve not in ("backbone", "projector"):
            raise ValueError(
                f"ContrastiveModel: `serve` must be 'backbone' or 'projector'; received {serve!r}."
            )
        if view_batches not in ("joint", "per_view"):
            raise ValueError(
                "ContrastiveModel: `view_batches` must be 'joint' or 'per_view'; received "
                f"{view_batches!r}."
            )
        self.view_batches = view_batches
        self.online_probe_classes = online_probe_classes
        self.online_probe = None
        if online_probe_classes is not None:
            _checks.integer(
                "online_probe_classes", online_probe_classes, "ContrastiveModel", least=2
            )
            self.online_probe = keras.layers.Dense(int(online_probe_classes), name="online_probe")
            self.online_probe_accuracy = keras.metrics.SparseCategoricalAccuracy(
                name="online_probe_accuracy"
            )
        self.algorithm = algorithms_lib.get(algorithm)
        self.backbone = backbone
        self.projector = projector if projector is not None else self.algorithm.default_projector()
        if predictor is None and self.algorithm.uses_predictor:
            predictor = self.algorithm.default_predictor()
            logger.info(
                "ContrastiveModel: %s needs a predictor; built the default %s.",
                self.algorithm.name,
                predictor.get_config(),
            )
        self.predictor = predictor if self.algorithm.uses_predictor else None
        if predictor is not None and not self.algorithm.uses_predictor:
            logger.warning(
                "ContrastiveModel: %s does not use a predictor; ignoring it.", self.algorithm.name
            )
        if isinstance(augmentation, (list, tuple)) and len(augmentation) < 2:
            raise ValueError(
                "ContrastiveModel: a list `augmentation` needs one layer "
                f"per view (at least 2); received {len(augmentation)}."
            )
        if int(views) < 2:
            raise ValueError(f"ContrastiveModel: `views` must be >= 2; received {views}.")
        self.augmentation_preset = None
        if isinstance(augmentation, str):
            from tfcontrast.layers import augmentation as augmentation_lib

            if augmentation != "auto" and augmentation not in augmentation_lib.preset_names():
                raise ValueError(
                    f"ContrastiveModel: unknown `augmentation` preset {augmentation!r}; "
                    f"expected 'auto' or one of {augmentation_lib.preset_names()}, or a layer."
                )
            # Built for the image shape in `build`.
            self.augmentation_preset, augmentation = augmentation, None
        if augmentation is not None:
            # One mechanism for views: every augmentation becomes a `ViewAugmenter`.
            augmentation = _view_augmenter(augmentation, int(views))
            views = augmentation.views
        self.augmentation = augmentation
        self.views = int(views)
        self.serve = serve
        # Total optimisation steps, for momentum schedules; set by `fit` when it can.
        self.total_steps = keras.Variable(0, dtype="int64", trainable=False, name="total_steps")
        # Steps taken by the momentum schedule. The model's own counter, not
        # `optimizer.iterations`: JAX's train step cannot read optimizer state in the loss.
        self.momentum_step = keras.Variable(0, dtype="int64", trainable=False, name="momentum_step")
        self.target_backbone = None
        self.target_projector = None
        self.target_initialized = None

    # -- building ------------------------------------------------------------------
    def build(self, input_shape):
        image_shape = tuple(input_shape[-3:])
        self._image_shape = image_shape
        if self.augmentation_preset is not None and self.augmentation is None:
            from tfcontrast.layers import augmentation as augmentation_lib

            self.augmentation = _view_augmenter(
                augmentation_lib.preset(self.augmentation_preset, image_shape), self.views
            )
        batch_shape = (None,) + image_shape
        if not self.backbone.built:
            self.backbone.build(batch_shape)
        feature_shape = self._feature_shape(batch_shape)
        if not self.projector.built:
            self.projector.build(feature_shape)
        projection_shape = self.projector.compute_output_shape(feature_shape)
        if self.predictor is not None and not self.predictor.built:
            self.predictor.build(projection_shape)
        if self.online_probe is not None and not self.online_probe.built:
            self.online_probe.build(feature_shape)
        if self.algorithm.uses_target:
            self.target_backbone = _clone_frozen(self.backbone, "backbone")
            self.target_projector = _clone_frozen(self.projector, "projector")
            self.target_backbone.build(batch_shape)
            self.target_projector.build(feature_shape)
            for network in (self.target_backbone, self.target_projector):
                # Frozen weights, but not frozen layers: in training steps the target's
                # BatchNorm normalises with the batch's statistics, as the momentum
                # encoders of BYOL, MoCo and MoCo v3 do. (`network.trainable = False`
                # would switch Keras' BatchNorm to its moving averages, which lag behind
                # the EMA weights; BYOL collapsed on them.)
                for variable in network.trainable_weights:
                    variable.trainable = False
            # `build` may run while tracing, where weights cannot be copied; the copy
            # happens in-graph at the first training step instead (see `target_outputs`).
            self.target_initialized = keras.Variable(
                False, dtype="bool", trainable=False, name="target_initialized"
            )
        self.algorithm.build(self, int(projection_shape[-1]))
        self.built = True

    def _feature_shape(self, batch_shape):
        try:
            shape = self.backbone.compute_output_shape(batch_shape)
        except Exception as error:  # noqa: BLE001 - re-raised with the fix to apply
            raise ValueError(
                "ContrastiveModel: `backbone` has no defined output shape for input "
                f"{batch_shape} ({error}). Give it a known input shape, e.g. "
                "`keras.Input((32, 32, 3))`, or pass a built model."
            ) from error
        if len(shape) != 2 or shape[-1] is None:
            raise ValueError(
                "ContrastiveModel: `backbone` must output feature vectors (batch, dim); "
                f"its output shape is {tuple(shape)}. Add pooling, e.g. "
                "`keras.applications.ResNet50(include_top=False, pooling='avg')`."
            )
        return tuple(shape)

    # -- forward -------------------------------------------------------------------
    def embed(self, images, training=False):
        """The served representation of a batch of images `(B, H, W, C)`."""
        features = self.backbone(images, training=training)
        if self.serve == "projector":
            return self.projector(features, training=training)
        return features

    def make_views(self, images, training=True):
        """Stacks augmented views of `images` on axis 1: `(B, V, H, W, C)`.

        For views of different sizes (multi-crop) use `make_view_groups`."""
        groups = self.make_view_groups(images, training=training)
        if len(groups) > 1:
            raise ValueError(
                "ContrastiveModel: the views have different sizes "
                f"{[tuple(g.shape[2:]) for g in groups]} and cannot be stacked into one "
                "tensor; `make_view_groups` returns them as groups (as training uses them)."
            )
        return groups[0]

    def make_view_groups(self, images, training=True):
        """Augmented views of `images` as a list of groups `(B, V_g, H_g, W_g, C)`: views
        that follow one another with the same size form a group (multi-crop: the global
        views, then the local ones). Training encodes each group as its own batch."""
        if self.augmentation is None:
            raise ValueError(
                "ContrastiveModel: training data are single images (B, H, W, C) but the "
                "model has no `augmentation`; pass `augmentation=` or feed views "
                "(B, V, H, W, C), e.g. from `tfcontrast.data.multiview`."
            )
        views = self.augmentation(images, training=training)
        if not isinstance(views, (tuple, list)):
            return [views]
        groups, run = [], [views[0]]
        for view in views[1:]:
            if tuple(view.shape[1:]) != tuple(run[-1].shape[1:]):
                groups.append(ops.stack(run, axis=1))
                run = []
            run.append(view)
        return groups + [ops.stack(run, axis=1)]

    def _apply_to_views(self, layer, x, training):
        """`layer` on every view of `x` `(B, V, ...)`: one batch of all the views
        (`view_batches="joint"`) or one batch per view (`"per_view"`)."""
        if self.view_batches == "per_view":
            if x.shape[1] is None:
                raise ValueError(
                    "ContrastiveModel: `view_batches='per_view'` needs a known number of "
                    f"views; received shape {tuple(x.shape)}."
                )
            return ops.stack([layer(x[:, v], training=training) for v in range(x.shape[1])], 1)
        shape = ops.shape(x)
        out = layer(ops.reshape(x, (-1,) + tuple(x.shape[2:])), training=training)
        return ops.reshape(out, (shape[0], shape[1]) + tuple(ops.shape(out)[1:]))

    def _encode_views(self, views, backbone, projector, training):
        features = self._apply_to_views(backbone, views, training)
        return features, self._apply_to_views(projector, features, training)

    def call(self, inputs, training=False):
        rank = len(inputs.shape)
        if rank not in (4, 5):
            raise ValueError(
                "ContrastiveModel: inputs must be images (B, H, W, C) or views "
                f"(B, V, H, W, C); received shape {tuple(inputs.shape)}."
            )
        if rank == 4 and not (training and self.augmentation is not None):
            return self.embed(inputs, training=training)
        groups = [inputs] if rank == 5 else self.make_view_groups(inputs, training=training)
        counts = [group.shape[1] for group in groups]
        if None not in counts and sum(counts) < 2:
            raise ValueError(
                f"ContrastiveModel: at least 2 views are needed; received shape "
                f"{tuple(inputs.shape)}."
            )
        if len(groups) > 1 and not self.algorithm.multi_crop:
            raise ValueError(
                f"ContrastiveModel: algorithm {self.algorithm.name!r} takes views of one size; "
                f"the augmentation made views of sizes {[tuple(g.shape[2:4]) for g in groups]}"
                ". Multi-crop works with algorithms whose `multi_crop` is True "
                f"({algorithms_lib.multi_crop_names()})."
            )
        encoded = [
            self._encode_views(group, self.backbone, self.projector, training) for group in groups
        ]
        features = ops.concatenate([f for f, _ in encoded], axis=1)
        projection = ops.concatenate([p for _, p in encoded], axis=1)
        # "views": the first group (the global views under multi-crop), which momentum
        # targets and teachers encode; the projections hold every view, that group first.
        outputs = {"views": groups[0], "features": features, "projection": projection}
        if self.online_probe is not None:  # on the first (global) group: whole images
            outputs["probe_logits"] = self.online_probe(ops.stop_gradient(encoded[0][0]))
        if self.predictor is not None:
            outputs["prediction"] = self._apply_to_views(self.predictor, projection, training)
        return outputs

    # -- momentum target -----------------------------------------------------------
    def _target_pairs(self):
        pairs = list(zip(self.target_backbone.weights, self.backbone.weights)) + list(
            zip(self.target_projector.weights, self.projector.weights)
        )
        # (target, online) weights of layers an algorithm keeps after the projector
        # (DINO's prototypes): copied at the first step and moved with the rest.
        extra = getattr(self.algorithm, "target_pairs", None)
        return pairs + (list(extra(self)) if extra is not None else [])

    def target_outputs(self, views, training=True):
        """Projections of `views` by the target network, without gradient.

        At the first training step the target is first set to a copy of the online
        network. In training steps its BatchNorm layers normalise with the batch's
        statistics (per view with `view_batches="per_view"`). With `training=False`
        (evaluation, validation) nothing changes: no copy, and BatchNorm uses the moving
        statistics.
        """
        if training:
            # Tensors, not Variables: JAX >= 0.10 rejects Variables inside `jnp.where`.
            ready = ops.convert_to_tensor(self.target_initialized)
            for target, online in self._target_pairs():
                current = ops.convert_to_tensor(target)
                target.assign(ops.where(ready, current, ops.cast(online, target.dtype)))
            self.target_initialized.assign(True)
        _, projection = self._encode_views(
            views, self.target_backbone, self.target_projector, training=training
        )
        return ops.stop_gradient(projection)

    def current_momentum(self):
        """The EMA momentum at the current optimizer step."""
        algo = self.algorithm
        if algo.momentum_final is None or algo.momentum_final == algo.momentum_base:
            return ops.convert_to_tensor(algo.momentum_base, "float32")
        return cosine_momentum(
            self.momentum_step, self.total_steps, algo.momentum_base, algo.momentum_final
        )

    def update_target(self, momentum=None):
        """`target <- m * target + (1 - m) * online`, in-graph, for every weight."""
        m = self.current_momentum() if momentum is None else momentum
        self.momentum_step.assign(self.momentum_step + 1)
        for target, online in self._target_pairs():
            mm = ops.cast(m, target.dtype)
            target.assign(mm * target + (1.0 - mm) * ops.cast(online, target.dtype))

    # -- training ------------------------------------------------------------------
    def compile(self, optimizer="adam", loss=None, **kwargs):
        if loss is not None:
            raise ValueError(
                "ContrastiveModel.compile: the loss comes from `algorithm`; do not pass "
                f"`loss` (received {loss!r}). Choose the method with `algorithm=`."
            )
        super().compile(optimizer=optimizer, **kwargs)

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        if not isinstance(y_pred, dict):
            raise ValueError(
                "ContrastiveModel: the loss needs views. Evaluate on views "
                "(B, V, H, W, C) or train with an `augmentation`."
            )
        labels = None
        if y is not None:
            labels = self._flat_labels(y)
        elif self.algorithm.needs_labels:
            raise ValueError(
                f"ContrastiveModel: algorithm {self.algorithm.name!r} needs labels; call "
                "`fit(x, y)` with integer class labels."
            )
        # State (queues, EMA targets, momentum steps) changes only in training steps:
        # `evaluate` and validation pass training=False.
        loss = self.algorithm.compute_loss(self, y_pred, labels, training=bool(training))
        if labels is not None and "probe_logits" in y_pred:
            loss = loss + ops.mean(
                keras.losses.sparse_categorical_crossentropy(
                    self._labels_per_view(labels, y_pred["probe_logits"]),
                    y_pred["probe_logits"],
                    from_logits=True,
                )
            )
        for extra in self.losses:
            loss = loss + _keras_compat.aggregate_additional_loss(self, extra)
        return loss

    @staticmethod
    def _flat_labels(y):
        """The labels `fit` passes, as int32 `(B,)`."""
        return ops.cast(ops.reshape(y, (-1,)), "int32")

    @staticmethod
    def _labels_per_view(labels, logits):
        """`labels` `(B,)` repeated for each view of `logits` `(B, V, C)`: `(B, V)`."""
        return ops.repeat(ops.expand_dims(labels, 1), logits.shape[1], axis=1)

    def compute_metrics(self, x, y, y_pred, sample_weight=None):
        if y is not None and isinstance(y_pred, dict) and "probe_logits" in y_pred:
            labels = self._flat_labels(y)
            logits = y_pred["probe_logits"]
            self.online_probe_accuracy.update_state(self._labels_per_view(labels, logits), logits)
        return super().compute_metrics(x, y, y_pred, sample_weight)

    def fit(
        self,
        x=None,
        y=None,
        batch_size=None,
        epochs=1,
        steps_per_epoch=None,
        initial_epoch=0,
        **kwargs,
    ):
        if not self.built:
            # Build now (not while tracing the first step) so that callbacks such as
            # `BackupAndRestore` can restore weights before training starts.
            shape = self._input_shape_of(x)
            if shape is not None:
                # In the model's distribution scope, so that the variables are mirrored.
                strategy = getattr(self, "distribute_strategy", None)
                with strategy.scope() if strategy is not None else contextlib.nullcontext():
                    self.build(shape)
        if isinstance(y, (np.ndarray, list, tuple)):
            y = integer_labels(y, "ContrastiveModel.fit")
        total = self._count_steps(x, batch_size, epochs, steps_per_epoch)
        if total:
            self.total_steps.assign(total)
        return super().fit(
            x,
            y,
            batch_size=batch_size,
            epochs=epochs,
            steps_per_epoch=steps_per_epoch,
            initial_epoch=initial_epoch,
            **kwargs,
        )

    @staticmethod
    def _input_shape_of(x):
        """The shape of the inputs in `x` (array or dataset), when it is known."""
        if hasattr(x, "shape"):
            return tuple(x.shape)
        spec = getattr(x, "element_spec", None)
        if isinstance(spec, (tuple, list)):
            spec = spec[0]
        if spec is not None and hasattr(spec, "shape") and spec.shape.rank in (4, 5):
            return tuple(spec.shape)
        return None

    @staticmethod
    def _count_steps(x, batch_size, epochs, steps_per_epoch):
        """Total training steps when they can be known before training, else 0."""
        if steps_per_epoch:
            return int(steps_per_epoch) * epochs
        if hasattr(x, "shape") and x.shape[0] is not None:
            return -(-int(x.shape[0]) // int(batch_size or 32)) * epochs
        cardinality = getattr(x, "cardinality", None)
        if cardinality is not None:
            n = int(cardinality())
            return n * epochs if n > 0 else 0
        return 0

    # -- saving --------------------------------------------------------------------
    def get_build_config(self):
        if not self.built:
            return None
        return {"input_shape": (None,) + tuple(self._image_shape)}

    def build_from_config(self, config):
        self.build(tuple(config["input_shape"]))

    def compile_from_config(self, config):
        config = keras.saving.deserialize_keras_object(config)
        self.compile(**config)
        if self.built:
            self.optimizer.build(self.trainable_variables)

    def get_config(self):
        config = super().get_config()
        ser = keras.saving.serialize_keras_object
        augmentation = self.augmentation
        config.update(
            {
                "backbone": ser(self.backbone),
                "projector": ser(self.projector),
                "predictor": None if self.predictor is None else ser(self.predictor),
                "algorithm": ser(self.algorithm),
                "augmentation": self.augmentation_preset
                if self.augmentation_preset is not None or augmentation is None
                else ser(augmentation),
                "views": self.views,
                "serve": self.serve,
                "view_batches": self.view_batches,
                "online_probe_classes": self.online_probe_classes,
            }
        )
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        de = keras.saving.deserialize_keras_object
        for key in ("backbone", "projector", "predictor", "algorithm"):
            if config.get(key) is not None:
                config[key] = de(config[key])
        augmentation = config.get("augmentation")
        if isinstance(augmentation, list):
            config["augmentation"] = [de(a) for a in augmentation]
        elif augmentation is not None and not isinstance(augmentation, str):
            config["augmentation"] = de(augmentation)
        return cls(**config)
