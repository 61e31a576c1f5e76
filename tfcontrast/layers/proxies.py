"""`Proxies`: the trainable class proxies (class centres, class weights) of proxy losses.

ArcFace, CosFace, Sub-center ArcFace, ProxyAnchor, ProxyNCA and NormalizedSoftmax
compare each embedding with one learned vector per class (or `num_centers` per class).
A `keras.losses.Loss` is not tracked by a model, so those vectors live in this layer:
the loss reads them, and the *model* must own the layer so that `fit` trains it and
`save` keeps it. Call the layer (an identity) on the embeddings inside a functional
model, or attach it to a subclassed model (`model.proxies = loss.proxies`). The model's
output stays the embedding: the proxies never enter the served graph.
"""

from __future__ import annotations

import uuid

import keras
from keras import ops

from tfcontrast import _checks, _keras_compat


@keras.saving.register_keras_serializable(package="tfcontrast")
class Proxies(keras.layers.Layer):
    """`num_classes * num_centers` trainable vectors of size `embedding_dim`.

    Row `c * num_centers + k` is sub-centre `k` of class `c` (`num_centers=1`: row `c`
    is the proxy of class `c`). Calling the layer returns its input unchanged, so it can
    sit on the embedding output of a functional model just to be owned, trained and
    saved by it. With `embedding_dim=None` the vectors are created when the layer is
    first called on the embeddings (their last dimension).

    Learning rate. Proxy losses are usually trained with a larger learning rate for the
    proxies than for the network (ProxyAnchor's authors use 100x). Keras optimizers have
    one learning rate, so `lr_multiplier=k` reparameterises the proxies as `k * v`, with
    `v` the trainable variable initialised at `initial / k`. For optimizers that are
    invariant to the gradient's scale (Adam, AdamW, RMSprop, Lion, ...) each step then
    moves the proxies exactly `k` times as far as it would without the multiplier; with
    plain SGD the factor is `k ** 2` (pass `sqrt(k)`). Decoupled weight decay is not
    multiplied; these losses normalise the proxies, so their decay rarely helps:
    `optimizer.exclude_from_weight_decay(var_list=loss.proxies.weights)`.

    Args:
        num_classes: number of classes `C` (>= 1).
        embedding_dim: size `D` of the embeddings, or `None` to infer it on first call.
        num_centers: sub-centres per class `K` (>= 1; Sub-center ArcFace uses 3).
        lr_multiplier: learning-rate multiplier `k` of the proxies (> 0, default 1).
        initializer: initializer of the proxies (before `lr_multiplier`); default a
            unit-variance normal (uniformly random directions).

    Example:

    ```python
    loss = tfcontrast.losses.ArcFaceLoss(num_classes=10, embedding_dim=64)
    inputs = keras.Input((28, 28, 1))
    embeddings = loss.proxies(backbone(inputs))  # identity; the model owns the proxies
    model = keras.Model(inputs, embeddings)
    model.compile(optimizer="adam", loss=loss)
    ```
    """

    def __init__(
        self,
        num_classes: int,
        embedding_dim: int | None = None,
        num_centers: int = 1,
        lr_multiplier: float = 1.0,
        initializer="default",
        share_key: str | None = None,
        **kwargs,
    ):
        # The proxies and the loss are float32 whatever the mixed-precision policy; as an
        # identity the layer then hands float32 embeddings on, never float16 ones.
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        owner = type(self).__name__
        self.num_classes = _checks.integer("num_classes", num_classes, owner, numpy_ints=False)
        self.num_centers = _checks.integer("num_centers", num_centers, owner, numpy_ints=False)
        if embedding_dim is not None:
            embedding_dim = _checks.integer("embedding_dim", embedding_dim, owner, numpy_ints=False)
        self.embedding_dim = embedding_dim
        self.lr_multiplier = _checks.positive("lr_multiplier", lr_multiplier, owner)
        if initializer == "default":
            initializer = keras.initializers.RandomNormal(stddev=1.0)
        self.initializer = keras.initializers.get(initializer)
        # Identifies this layer across a save / load so that the loss and the model
        # share one layer after `keras.saving.load_model` (see `from_config`).
        self.share_key = share_key or uuid.uuid4().hex
        self.variable = None
        if embedding_dim is not None:
            self._create(embedding_dim)

    def _create(self, dim: int):
        initializer = self.initializer
        if self.lr_multiplier != 1.0:
            base, k = self.initializer, self.lr_multiplier

            def initializer(shape, dtype=None):
                return base(shape, dtype=dtype) / k

        self.embedding_dim = dim
        self.variable = self.add_weight(
            shape=(self.num_classes * self.num_centers, dim),
            initializer=initializer,
            dtype="float32",
            name="proxies",
        )
        self.built = True

    def build(self, input_shape):
        if self.variable is None:
            dim = input_shape[-1]
            if dim is None:
                raise ValueError(
                    f"{type(self).__name__}: the embeddings' last dimension must be known "
                    "to create the proxies; pass `embedding_dim`."
                )
            self._create(int(dim))

    @property
    def size(self) -> int:
        """Number of vectors, `num_classes * num_centers`."""
        return self.num_classes * self.num_centers

    @property
    def vectors(self):
        """The proxies, float32 `(num_classes * num_centers, embedding_dim)`."""
        if self.variable is None:
            raise ValueError(
                f"{type(self).__name__}: the proxies do not exist yet: give `embedding_dim`, "
                "or call the layer on the embeddings (in the model) before using the loss."
            )
        vectors = ops.cast(self.variable, "float32")
        return vectors if self.lr_multiplier == 1.0 else vectors * self.lr_multiplier

    def set_vectors(self, values):
        """Assigns the proxies (e.g. the dominant sub-centres of `subcenter_outliers`)."""
        values = ops.convert_to_tensor(values, dtype="float32")
        if self.variable is None:
            self._create(int(values.shape[-1]))
        expected = tuple(self.variable.shape)
        if tuple(values.shape) != expected:
            raise ValueError(
                f"{type(self).__name__}: `values` must have shape {expected}; received "
                f"{tuple(values.shape)}."
            )
        self.variable.assign(values / self.lr_multiplier)

    def call(self, inputs):
        dim = inputs.shape[-1]
        if dim is not None and dim != self.embedding_dim:
            raise ValueError(
                f"{type(self).__name__}: the embeddings have dimension {dim}, the proxies "
                f"{self.embedding_dim} (`embedding_dim`)."
            )
        return inputs

    def compute_output_shape(self, input_shape):
        return input_shape

    @classmethod
    def from_config(cls, config):
        # Within one `keras.saving.load_model`, the model's layer is deserialized before
        # the compiled loss; the loss's copy of the config then returns that same layer.
        # (A functional model's config copies its layers' configs before the compile
        # config, and the loss in it, is serialized, so Keras' own `shared_object_id`
        # never reaches the layer's copy, and a reloaded loss would get proxies of its
        # own, apart from the model's trained layer: hence `share_key` and Keras' table
        # of the objects of the current load.)
        key = config.get("share_key")
        if key:
            existing = _keras_compat.get_shared_object(f"tfcontrast.Proxies/{key}")
            if existing is not None:
                return existing
        instance = super().from_config(config)
        if key:
            _keras_compat.record_shared_object(instance, f"tfcontrast.Proxies/{key}")
        return instance

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "share_key": self.share_key,
                "num_classes": self.num_classes,
                "embedding_dim": self.embedding_dim,
                "num_centers": self.num_centers,
                "lr_multiplier": self.lr_multiplier,
                "initializer": keras.initializers.serialize(self.initializer),
            }
        )
        return config
