"""Image augmentation layers and presets for contrastive learning.

Positives in self-supervised contrastive learning are two random augmentations of one
image, so the augmentations carry most of the signal: SimCLR (Chen et al., 2020,
https://arxiv.org/abs/2002.05709) showed that random resized crops plus strong colour
distortion are the key ingredients.

Conventions shared by every layer here:

- Input: a batch of images `(B, H, W, C)` (a single image `(H, W, C)` also works), channels
  last. Float images are expected in **[0, 1]**; integer images (e.g. `uint8` from
  `tensorflow-datasets`) are converted to float32 and divided by 255. Outputs are float32
  in [0, 1].
- Randomness is **per image**: each image of the batch gets its own crop box, jitter
  factors, blur sigma and coin flips. Each layer owns a `keras.random.SeedGenerator`
  built from `seed`, so two layers built with the same seed produce the same sequence of
  augmentations, and successive calls (epochs) differ.
- `training=False` (inference, `model.predict`) turns every layer into the identity
  (`RandomResizedCrop` then only resizes to its output size).
- Only `keras.ops` and `keras.random` are used, so the layers run on every Keras backend,
  inside a model or in `tf.data` (`ds.map(layer)`, TensorFlow backend).

Keras' own `keras.layers.RandomFlip` works with these layers (per image, seeded); the
presets instead fold the horizontal flip into `RandomResizedCrop(horizontal_flip=True)`,
which costs nothing extra. The other layers are written here because Keras' versions
differ from SimCLR's semantics or are slow on CPU: Keras' `RandomColorJitter` always
applies every distortion (no probability) with an additive brightness,
`RandomGaussianBlur`'s `factor` is a strength rather than a probability, `Solarization`
draws random thresholds, and `RandomGrayscale`/`RandomFlip` select with a broadcast
`where`, several times slower than an arithmetic blend on CPU.
"""

from __future__ import annotations

import math

import keras
from keras import ops

from tfcontrast import _checks

_PACKAGE = "tfcontrast"


def to_float_images(images):
    """Converts images to float32 in [0, 1]: integer images are divided by 255."""
    images = ops.convert_to_tensor(images)
    dtype = keras.backend.standardize_dtype(images.dtype)
    if dtype.startswith("int") or dtype.startswith("uint"):
        return ops.cast(images, "float32") / 255.0
    return ops.cast(images, "float32")


def _mean_colour(images):
    """Mean colour `(B, C)` of `(B, H, W, C)` images.

    Reduces `(B, H, W * C)` rows first (a long contiguous inner axis), then the `W`
    groups: about twice as fast on CPU as reducing axes (1, 2) with `C` innermost.
    """
    h, w, c = images.shape[1], images.shape[2], images.shape[3]
    if h is None or w is None or c is None:
        return ops.mean(images, axis=(1, 2))
    rows = ops.mean(ops.reshape(images, (-1, h, w * c)), axis=1)
    return ops.mean(ops.reshape(rows, (-1, w, c)), axis=1)


def _grayscale(images):
    """Luma (ITU-R 601) of RGB images, shape (B, H, W, 1)."""
    weights = ops.convert_to_tensor(_LUMA[0], dtype="float32")
    return ops.sum(images * weights, axis=-1, keepdims=True)


class _ImageAugmentation(keras.layers.Layer):
    """Base of tfcontrast augmentation layers (batched, per-image random, seeded)."""

    def __init__(self, p: float = 1.0, seed: int | None = None, **kwargs):
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        self.p = _checks.in_range("p", p, type(self).__name__, 0.0, 1.0)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)
        self.supports_masking = False

    def call(self, images, training=True):
        images = to_float_images(images)
        unbatched = len(images.shape) == 3
        if unbatched:
            images = ops.expand_dims(images, 0)
        if len(images.shape) != 4:
            raise ValueError(
                f"{type(self).__name__}: `images` must have shape (B, H, W, C) or (H, W, C); "
                f"received shape {tuple(images.shape)}."
            )
        out = self.augment(images) if training else self.inference(images)
        return ops.squeeze(out, 0) if unbatched else out

    def inference(self, images):
        return images

    def augment(self, images):  # pragma: no cover - abstract
        raise NotImplementedError

    def _uniform(self, batch, low=0.0, high=1.0, extra=()):
        return keras.random.uniform(
            (batch, *extra), minval=low, maxval=high, seed=self.seed_generator
        )

    def _apply_with_probability(self, images, augmented):
        """Per image: `augmented` with probability `p`, else `images`."""
        if self.p >= 1.0:
            return augmented
        # An arithmetic blend: a broadcast `where` is several times slower on CPU.
        apply = ops.cast(self._uniform(ops.shape(images)[0]) < self.p, augmented.dtype)
        return images + ops.reshape(apply, (-1, 1, 1, 1)) * (augmented - images)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update({"p": self.p, "seed": self.seed})
        return config


@keras.saving.register_keras_serializable(package=_PACKAGE)
class RandomResizedCrop(_ImageAugmentation):
    """Crops a random box of each image and resizes it to `(height, width)`.

    For each image, the crop has area `s * H * W` and aspect ratio (width / height) `r`,
    with `s ~ U(scale)` and `log r ~ U(log ratio)` (torchvision's `RandomResizedCrop`,
    used by SimCLR, BYOL, MoCo). Up to 10 draws are tried per image, vectorised, and the
    first box that fits is kept; if none fits, the whole image is used. The box position
    is uniform over the valid offsets. Resampling is bilinear.

    With `horizontal_flip=True` each crop is also mirrored with probability 0.5, folded
    into the same resampling (no extra pass over the pixels).

    At inference (`training=False`) the layer resizes the whole image to `(height, width)`
    (the identity when the sizes already match).

    On the TensorFlow backend the resampling is `tf.image.crop_and_resize` (one fused
    kernel, about 4x faster than the generic path); on other backends it is
    `keras.ops.image.affine_transform` with one scale-and-translate transform per image.

    Args:
        height: output height.
        width: output width.
        scale: range of the crop area as a fraction of the image area.
        ratio: range of the crop aspect ratio (width / height).
        horizontal_flip: also flip each crop left-right with probability 0.5.
        seed: integer seed for reproducible crops.

    Example:

    ```python
    crop = tfcontrast.layers.RandomResizedCrop(32, 32, scale=(0.2, 1.0), seed=0)
    views = crop(images)  # (B, 32, 32, C), one random box per image
    ```
    """

    _ATTEMPTS = 10

    def __init__(
        self,
        height: int,
        width: int,
        scale=(0.08, 1.0),
        ratio=(3.0 / 4.0, 4.0 / 3.0),
        horizontal_flip: bool = False,
        seed: int | None = None,
        **kwargs,
    ):
        kwargs.pop("p", None)
        super().__init__(p=1.0, seed=seed, **kwargs)
        self.height, self.width = _checks.size_pair(
            "height/width", (height, width), "RandomResizedCrop"
        )
        self.scale = _checks.ordered_pair("scale", scale, "RandomResizedCrop", 0.0, 1.0)
        if self.scale[1] <= 0.0:
            raise ValueError(
                f"RandomResizedCrop: `scale` must have max > 0; received scale={scale!r}."
            )
        self.ratio = _checks.ordered_pair("ratio", ratio, "RandomResizedCrop", 0.0)
        if self.ratio[0] <= 0.0:
            raise ValueError(f"RandomResizedCrop: `ratio` must be > 0; received ratio={ratio!r}.")
        self.horizontal_flip = bool(horizontal_flip)

    def _sample_boxes(self, batch, h, w):
        """Per-image crop (top, left, crop_h, crop_w) as fractions of H and W, and flips."""
        n = self._ATTEMPTS
        area = self._uniform(batch, self.scale[0], self.scale[1], (n,))
        log_r = self._uniform(batch, math.log(self.ratio[0]), math.log(self.ratio[1]), (n,))
        r = ops.exp(log_r)
        # Fractions of the sides: (cw * W) * (ch * H) = area * H * W and cw*W / (ch*H) = r.
        cw = ops.sqrt(area * r * (h / w))
        ch = ops.sqrt(area / r * (w / h))
        fits = ops.logical_and(cw <= 1.0, ch <= 1.0)
        first = ops.argmax(ops.cast(fits, "int32"), axis=1)
        any_fit = ops.any(fits, axis=1)
        onehot = ops.one_hot(first, n, dtype="float32")
        cw = ops.where(any_fit, ops.sum(cw * onehot, axis=1), 1.0)
        ch = ops.where(any_fit, ops.sum(ch * onehot, axis=1), 1.0)
        top = self._uniform(batch) * (1.0 - ch)
        left = self._uniform(batch) * (1.0 - cw)
        if self.horizontal_flip:
            flip = ops.cast(self._uniform(batch) < 0.5, "float32")
        else:
            flip = ops.zeros_like(top)
        return top, left, ch, cw, flip

    def _crop_resize(self, images, top, left, ch, cw, flip, index=None):
        h, w = images.shape[1], images.shape[2]
        out_h, out_w = self.height, self.width
        if _use_tf_crop():
            import tensorflow as tf

            # crop_and_resize samples box corners at y1 * (H - 1) ... y2 * (H - 1) (corner
            # aligned); a box with x1 > x2 comes out mirrored, which gives the flip for free.
            y1, y2 = top, top + ch
            x1, x2 = left, left + cw
            x1, x2 = x1 + flip * (x2 - x1), x2 + flip * (x1 - x2)
            boxes = tf.stack([y1, x1, y2, x2], axis=1)
            if index is None:
                index = tf.range(tf.shape(images)[0])
            return tf.image.crop_and_resize(images, boxes, index, (out_h, out_w))
        # affine_transform keeps the input size: work on a canvas at least as large as the
        # output and keep its top-left (out_h, out_w) corner.
        canvas_h, canvas_w = max(h, out_h), max(w, out_w)
        if (canvas_h, canvas_w) != (h, w):
            images = ops.image.resize(images, (canvas_h, canvas_w), interpolation="bilinear")
        # Output pixel centre x + 0.5 maps to input coordinate
        # left * W' + (x + 0.5) * sx - 0.5 (sx = cw * W' / out_w), mirrored when flipped.
        sx = cw * canvas_w / out_w
        sy = ch * canvas_h / out_h
        a0 = sx * (1.0 - 2.0 * flip)
        a2 = left * canvas_w - 0.5 + sx * (0.5 + flip * (out_w - 1))
        b2 = top * canvas_h + 0.5 * sy - 0.5
        zeros = ops.zeros_like(a0)
        transform = ops.stack([a0, zeros, a2, zeros, sy, b2, zeros, zeros], axis=1)
        out = ops.image.affine_transform(
            images, transform, interpolation="bilinear", fill_mode="nearest"
        )
        if (canvas_h, canvas_w) != (out_h, out_w):
            out = out[:, :out_h, :out_w, :]
        return out

    def augment(self, images):
        h, w = images.shape[1], images.shape[2]
        if h is None or w is None:
            raise ValueError(
                "RandomResizedCrop: `images` need a static height and width; resize them "
                "first (e.g. `tfcontrast.data.from_folder(..., image_size=...)`)."
            )
        boxes = self._sample_boxes(ops.shape(images)[0], h, w)
        # Bilinear weights are convex and the fill repeats edge pixels: no clip needed.
        return self._crop_resize(images, *boxes)

    def _augment_views(self, images, views):
        """`views` independent crops of every image in one fused call (TensorFlow backend).

        Returns `(B * views, height, width, C)`, image-major: rows `b * views + v` are the
        views of image `b`, so a reshape to `(B, views, ...)` is free. Each row draws its
        own box and flip, exactly as `views` separate calls would.
        """
        import tensorflow as tf

        h, w = images.shape[1], images.shape[2]
        batch = tf.shape(images)[0]
        boxes = self._sample_boxes(batch * views, h, w)
        index = tf.repeat(tf.range(batch), views)
        return self._crop_resize(images, *boxes, index=index)

    def inference(self, images):
        if tuple(images.shape[1:3]) == (self.height, self.width):
            return images
        return ops.image.resize(images, (self.height, self.width), interpolation="bilinear")

    def compute_output_shape(self, input_shape):
        input_shape = tuple(input_shape)
        if len(input_shape) == 3:
            return (self.height, self.width, input_shape[-1])
        return (input_shape[0], self.height, self.width, input_shape[-1])

    def get_config(self):
        config = super().get_config()
        config.pop("p")
        config.update(
            {
                "height": self.height,
                "width": self.width,
                "scale": list(self.scale),
                "ratio": list(self.ratio),
                "horizontal_flip": self.horizontal_flip,
            }
        )
        return config


def _use_tf_crop() -> bool:
    """Whether to use the fused `tf.image.crop_and_resize` kernel (TensorFlow backend)."""
    return keras.backend.backend() == "tensorflow"


# ITU-R 601 luma and the RGB <-> YIQ transforms (rows act on column colour vectors).
_LUMA = ((0.299, 0.587, 0.114),)
_RGB_TO_YIQ = ((0.299, 0.587, 0.114), (0.596, -0.274, -0.322), (0.211, -0.523, 0.312))


@keras.saving.register_keras_serializable(package=_PACKAGE)
class ColorJitter(_ImageAugmentation):
    """Randomly changes brightness, contrast, saturation and hue, with probability `p`.

    With probability `p` per image, and with factors drawn per image, applies in this
    fixed order (the order of Keras' `RandomColorJitter`; SimCLR shuffles the order per
    image, which would cost four passes when vectorised over a batch):

    - brightness: `x * b`, `b ~ U(max(0, 1 - brightness), 1 + brightness)` (SimCLR v2's
      multiplicative brightness),
    - contrast: `m + c (x - m)`, `m` the mean luma of the image,
      `c ~ U(max(0, 1 - contrast), 1 + contrast)`,
    - saturation: `g + s (x - g)`, `g` the per-pixel luma,
      `s ~ U(max(0, 1 - saturation), 1 + saturation)`,
    - hue: rotate the hue by `h ~ U(-hue, hue)` turns (`hue <= 0.5`).

    `fused=True` (default) composes the four steps into one affine colour transform per
    image (`x -> A x + t`, a 3x3 matrix and an offset), applied in a single pass and
    clipped to [0, 1] once; the hue step is then a rotation about the gray axis in YIQ
    space, a linear approximation of the HSV hue shift. `fused=False` follows torchvision
    / SimCLR literally: HSV hue shift and clipping after every step, about 10x slower.
    Both are per-image colour distortions of the same strength.

    `grayscale` is the probability of converting each image to grayscale after the jitter,
    drawn independently of `p` (SimCLR's `RandomGrayscale(0.2)` that follows the jitter);
    in the fused mode it is folded into the same single pass.

    SimCLR's colour distortion of strength `s` is
    `ColorJitter(0.8 s, 0.8 s, 0.8 s, 0.2 s, p=0.8, grayscale=0.2)`.
    Saturation, hue and grayscale act on RGB images only: on 1-channel images they are
    skipped (no-ops by design) and brightness and contrast still apply, so the colour
    presets also run on grayscale data. Other channel counts need them set to 0.

    Args:
        brightness: maximum relative brightness change (>= 0).
        contrast: maximum relative contrast change (>= 0).
        saturation: maximum relative saturation change (>= 0).
        hue: maximum hue rotation in turns, in [0, 0.5].
        p: probability of jittering each image.
        grayscale: probability of converting each image to grayscale after the jitter.
        fused: single-pass affine colour transform (True) or step-by-step (False).
        seed: integer seed.

    Example:

    ```python
    jitter = tfcontrast.layers.ColorJitter(0.4, 0.4, 0.4, 0.1, p=0.8, seed=0)
    out = jitter(images)
    ```
    """

    def __init__(
        self,
        brightness: float = 0.8,
        contrast: float = 0.8,
        saturation: float = 0.8,
        hue: float = 0.2,
        p: float = 0.8,
        grayscale: float = 0.0,
        fused: bool = True,
        seed: int | None = None,
        **kwargs,
    ):
        super().__init__(p=p, seed=seed, **kwargs)
        self.grayscale = _checks.in_range("grayscale", grayscale, "ColorJitter", 0.0, 1.0)
        for name, value in (
            ("brightness", brightness),
            ("contrast", contrast),
            ("saturation", saturation),
            ("hue", hue),
        ):
            _checks.non_negative(name, value, "ColorJitter")
        if hue > 0.5:
            raise ValueError(f"ColorJitter: `hue` must be in [0, 0.5]; received hue={hue!r}.")
        self.brightness = float(brightness)
        self.contrast = float(contrast)
        self.saturation = float(saturation)
        self.hue = float(hue)
        self.fused = bool(fused)

    def _factor(self, batch, amount):
        return self._uniform(batch, max(0.0, 1.0 - amount), 1.0 + amount)

    def _colour_ops(self, channels):
        """Whether the colour steps (saturation, hue, grayscale) apply to `channels`.

        They need RGB; on 1-channel images they are skipped by design (a gray image has no
        saturation or hue to change), so one layer serves both kinds of data.
        """
        if channels == 3:
            return True
        if channels != 1:
            for name in ("saturation", "hue", "grayscale"):
                if getattr(self, name) > 0:
                    raise ValueError(
                        f"ColorJitter: `{name}` needs RGB (3 channels) or grayscale (1 channel) "
                        f"images; received {channels} channels. Set {name}=0 for such images."
                    )
        return False

    def augment(self, images):
        channels = images.shape[-1]
        colour = self._colour_ops(channels)
        if self.fused:
            return self._augment_fused(images, channels, colour)
        return self._augment_steps(images, channels, colour)

    def _augment_fused(self, images, channels, colour=True):
        batch = ops.shape(images)[0]
        c = channels
        eye = ops.eye(c, dtype="float32")
        mat = ops.broadcast_to(eye, (batch, c, c))  # (B, C, C), acts on column colours
        offset = ops.zeros((batch, c), dtype="float32")
        luma = ops.convert_to_tensor(_LUMA, dtype="float32") if c == 3 else ops.ones((1, 1))
        if self.brightness > 0:
            b = self._factor(batch, self.brightness)[:, None]
            mat, offset = mat * b[:, :, None], offset * b
        if self.contrast > 0:
            # Mean luma of the current image, from the mean colour of the input (exact: the
            # transform is affine).
            mean_colour = _mean_colour(images)  # (B, C)
            current = ops.einsum("bij,bj->bi", mat, mean_colour) + offset
            m = ops.sum(current * luma, axis=-1, keepdims=True)  # (B, 1)
            k = self._factor(batch, self.contrast)[:, None]
            mat, offset = mat * k[:, :, None], offset * k + (1.0 - k) * m
        if colour and self.saturation > 0:
            s = self._factor(batch, self.saturation)[:, None, None]
            gray = ops.broadcast_to(luma, (c, c))
            sat = s * eye + (1.0 - s) * gray
            mat, offset = ops.matmul(sat, mat), ops.einsum("bij,bj->bi", sat, offset)
        if colour and self.hue > 0:
            theta = 2.0 * math.pi * self._uniform(batch, -self.hue, self.hue)
            cos, sin = ops.cos(theta), ops.sin(theta)
            one, zero = ops.ones_like(cos), ops.zeros_like(cos)
            rot = ops.stack(
                [
                    ops.stack([one, zero, zero], axis=-1),
                    ops.stack([zero, cos, -sin], axis=-1),
                    ops.stack([zero, sin, cos], axis=-1),
                ],
                axis=1,
            )
            to_yiq = ops.convert_to_tensor(_RGB_TO_YIQ, dtype="float32")
            from_yiq = ops.inv(to_yiq)
            hue = ops.matmul(ops.matmul(from_yiq, rot), to_yiq)
            mat, offset = ops.matmul(hue, mat), ops.einsum("bij,bj->bi", hue, offset)
        if self.p < 1.0:
            apply = ops.cast(self._uniform(batch) < self.p, "float32")
            mat = eye + apply[:, None, None] * (mat - eye)
            offset = offset * apply[:, None]
        if colour and self.grayscale > 0:
            gray = ops.broadcast_to(luma, (c, c))
            g = ops.cast(self._uniform(batch) < self.grayscale, "float32")[:, None, None]
            to_gray = eye + g * (gray - eye)
            mat, offset = ops.matmul(to_gray, mat), ops.einsum("bij,bj->bi", to_gray, offset)
        h, w = images.shape[1], images.shape[2]
        if h is None or w is None:
            out = ops.einsum("bhwc,bdc->bhwd", images, mat) + offset[:, None, None, :]
            return ops.clip(out, 0.0, 1.0)
        # One batched matmul, then the offset added on (B, H, W * C) rows: broadcasting a
        # (B, 1, 1, C) offset over a tiny innermost axis is several times slower on CPU.
        out = ops.matmul(ops.reshape(images, (-1, h * w, c)), ops.transpose(mat, (0, 2, 1)))
        out = ops.reshape(out, (-1, h, w * c)) + ops.tile(offset[:, None, :], (1, 1, w))
        return ops.reshape(ops.clip(out, 0.0, 1.0), (-1, h, w, c))

    def _augment_steps(self, images, channels, colour=True):
        batch = ops.shape(images)[0]
        x = images

        def factor(amount):
            return ops.reshape(self._factor(batch, amount), (-1, 1, 1, 1))

        if self.brightness > 0:
            x = ops.clip(x * factor(self.brightness), 0.0, 1.0)
        if self.contrast > 0:
            gray = _grayscale(x) if channels == 3 else x
            mean = ops.mean(gray, axis=(1, 2, 3), keepdims=True)
            x = ops.clip(mean + factor(self.contrast) * (x - mean), 0.0, 1.0)
        if colour and self.saturation > 0:
            gray = _grayscale(x)
            x = ops.clip(gray + factor(self.saturation) * (x - gray), 0.0, 1.0)
        if colour and self.hue > 0:
            hsv = ops.image.rgb_to_hsv(x)
            delta = ops.reshape(self._uniform(batch, -self.hue, self.hue), (-1, 1, 1))
            h = hsv[..., 0] + delta
            h = h - ops.floor(h)
            x = ops.image.hsv_to_rgb(ops.concatenate([h[..., None], hsv[..., 1:]], axis=-1))
            x = ops.clip(x, 0.0, 1.0)
        x = self._apply_with_probability(images, x)
        if colour and self.grayscale > 0:
            g = ops.cast(self._uniform(batch) < self.grayscale, "float32")
            x = x + ops.reshape(g, (-1, 1, 1, 1)) * (_grayscale(x) - x)
        return x

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "grayscale": self.grayscale,
                "brightness": self.brightness,
                "contrast": self.contrast,
                "saturation": self.saturation,
                "hue": self.hue,
                "fused": self.fused,
            }
        )
        return config


@keras.saving.register_keras_serializable(package=_PACKAGE)
class RandomGrayscale(_ImageAugmentation):
    """Converts each image to grayscale (luma) with probability `p`, keeping 3 channels.

    Same semantics as `keras.layers.RandomGrayscale(factor=p)`; written here with an
    arithmetic per-image blend instead of a broadcast `where`, which is several times
    faster on CPU for large batches. Images that are not RGB pass through unchanged.

    Args:
        p: probability of converting each image.
        seed: integer seed.

    Example:

    ```python
    gray = tfcontrast.layers.RandomGrayscale(p=0.2, seed=0)
    ```
    """

    def __init__(self, p: float = 0.2, seed: int | None = None, **kwargs):
        super().__init__(p=p, seed=seed, **kwargs)

    def augment(self, images):
        if images.shape[-1] != 3:
            return images
        gray = _grayscale(images)
        if self.p >= 1.0:
            return ops.broadcast_to(gray, ops.shape(images))
        return self._apply_with_probability(images, gray)


@keras.saving.register_keras_serializable(package=_PACKAGE)
class GaussianBlur(_ImageAugmentation):
    """Blurs each image with probability `p`, with its own sigma.

    Per image, `sigma ~ U(sigma)` and the image is convolved with a separable Gaussian of
    `kernel_size` taps (renormalised at the borders, so edges do not darken). SimCLR blurs
    ImageNet images with `kernel_size` 10% of the image side, `sigma in [0.1, 2.0]`,
    `p = 0.5`; BYOL uses `p = 1.0` for one view and `0.1` for the other.

    The blur is written as two per-image banded matrix products (height, then width),
    which vectorises over a batch with different sigmas on every backend.

    Args:
        kernel_size: odd number of taps (>= 1).
        sigma: range `(min, max)` of the standard deviation in pixels, `min > 0`.
        p: probability of blurring each image.
        seed: integer seed.

    Example:

    ```python
    blur = tfcontrast.layers.GaussianBlur(kernel_size=23, sigma=(0.1, 2.0), p=0.5)
    ```
    """

    def __init__(
        self,
        kernel_size: int = 23,
        sigma=(0.1, 2.0),
        p: float = 0.5,
        seed: int | None = None,
        **kwargs,
    ):
        super().__init__(p=p, seed=seed, **kwargs)
        if not isinstance(kernel_size, int) or kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(
                f"GaussianBlur: `kernel_size` must be an odd integer >= 1; received "
                f"kernel_size={kernel_size!r}."
            )
        self.kernel_size = kernel_size
        self.sigma = _checks.ordered_pair("sigma", sigma, "GaussianBlur", 0.0)
        if self.sigma[0] <= 0.0:
            raise ValueError(f"GaussianBlur: `sigma` must be > 0; received sigma={sigma!r}.")

    def _blur_matrix(self, sigma, n):
        """(B, n, n) row-normalised banded Gaussian matrices."""
        idx = ops.arange(n, dtype="float32")
        diff = idx[:, None] - idx[None, :]
        radius = self.kernel_size // 2
        band = ops.cast(ops.abs(diff) <= radius, "float32")
        s = ops.reshape(sigma, (-1, 1, 1))
        weights = ops.exp(-(diff**2)[None] / (2.0 * s * s)) * band[None]
        return weights / ops.sum(weights, axis=-1, keepdims=True)

    def augment(self, images):
        h, w = images.shape[1], images.shape[2]
        if h is None or w is None:
            raise ValueError("GaussianBlur: `images` need a static height and width.")
        sigma = self._uniform(ops.shape(images)[0], self.sigma[0], self.sigma[1])
        blurred = ops.einsum("bij,bjwc->biwc", self._blur_matrix(sigma, h), images)
        blurred = ops.einsum("bkw,biwc->bikc", self._blur_matrix(sigma, w), blurred)
        return self._apply_with_probability(images, ops.clip(blurred, 0.0, 1.0))

    def get_config(self):
        config = super().get_config()
        config.update({"kernel_size": self.kernel_size, "sigma": list(self.sigma)})
        return config


@keras.saving.register_keras_serializable(package=_PACKAGE)
class Solarize(_ImageAugmentation):
    """Inverts the pixels at or above `threshold` (`x -> 1 - x`), with probability `p`.

    BYOL solarizes the second view with `p = 0.2` and threshold 0.5 (images in [0, 1]).

    Args:
        threshold: pixel value in [0, 1] from which pixels are inverted.
        p: probability of solarizing each image.
        seed: integer seed.

    Example:

    ```python
    solarize = tfcontrast.layers.Solarize(threshold=0.5, p=0.2)
    ```
    """

    def __init__(self, threshold: float = 0.5, p: float = 0.2, seed: int | None = None, **kwargs):
        super().__init__(p=p, seed=seed, **kwargs)
        self.threshold = _checks.in_range("threshold", threshold, "Solarize", 0.0, 1.0)

    def augment(self, images):
        solarized = ops.where(images >= self.threshold, 1.0 - images, images)
        return self._apply_with_probability(images, solarized)

    def get_config(self):
        config = super().get_config()
        config["threshold"] = self.threshold
        return config


@keras.saving.register_keras_serializable(package=_PACKAGE)
class RandomGaussianNoise(_ImageAugmentation):
    """Adds Gaussian pixel noise of standard deviation `stddev`, with probability `p`.

    Unlike `keras.layers.GaussianNoise`, the result is clipped back to [0, 1] and the
    noise is applied to a random subset of the images.

    Args:
        stddev: noise standard deviation (>= 0), in units of the [0, 1] range.
        p: probability of adding noise to each image.
        seed: integer seed.

    Example:

    ```python
    noise = tfcontrast.layers.RandomGaussianNoise(stddev=0.05, p=0.5)
    ```
    """

    def __init__(self, stddev: float = 0.05, p: float = 0.5, seed: int | None = None, **kwargs):
        super().__init__(p=p, seed=seed, **kwargs)
        self.stddev = _checks.non_negative("stddev", stddev, "RandomGaussianNoise")

    def augment(self, images):
        noise = keras.random.normal(ops.shape(images), stddev=self.stddev, seed=self.seed_generator)
        return self._apply_with_probability(images, ops.clip(images + noise, 0.0, 1.0))

    def get_config(self):
        config = super().get_config()
        config["stddev"] = self.stddev
        return config


@keras.saving.register_keras_serializable(package=_PACKAGE)
class RandomAffine(_ImageAugmentation):
    """Rotates, shears, scales and shifts each image by its own small random affine map.

    Per image, with probability `p`: a rotation `r ~ U(-rotation, rotation)` degrees, a
    horizontal shear of `~ U(-shear, shear)` degrees, an isotropic zoom
    `z ~ U(scale)` (> 1 enlarges) and a shift of `~ U(-translate, translate)` times the
    image side, all about the image centre, resampled bilinearly in one pass at the input
    size. Uncovered pixels repeat the nearest edge pixel (`fill_mode="nearest"`), which is
    the background for glyphs on a plain ground, light or dark; `"constant"` fills with
    `fill_value`.

    These are the geometric changes a glyph survives (a slanted, larger or off-centre 4
    is still a 4), the augmentation of the classic MNIST and character-recognition
    recipes; unlike `RandomResizedCrop` it also zooms out and never crops a stroke away
    at the scales given.

    Args:
        rotation: maximum rotation in degrees (>= 0).
        shear: maximum shear angle in degrees, in [0, 60].
        scale: zoom range `(min, max)`, `0 < min <= max`.
        translate: maximum shift as a fraction of the height and width, in [0, 0.5].
        p: probability of transforming each image.
        fill_mode: `"nearest"`, `"constant"`, `"reflect"` or `"wrap"`.
        fill_value: the value of `"constant"` filling, in [0, 1].
        seed: integer seed.

    Example:

    ```python
    affine = tfcontrast.layers.RandomAffine(rotation=10, shear=10, scale=(0.85, 1.1),
                                            translate=0.1, seed=0)
    out = affine(digits)  # same shape, each digit slightly moved
    ```
    """

    _FILL_MODES = ("nearest", "constant", "reflect", "wrap")

    def __init__(
        self,
        rotation: float = 10.0,
        shear: float = 10.0,
        scale=(0.9, 1.1),
        translate: float = 0.1,
        p: float = 1.0,
        fill_mode: str = "nearest",
        fill_value: float = 0.0,
        seed: int | None = None,
        **kwargs,
    ):
        super().__init__(p=p, seed=seed, **kwargs)
        owner = "RandomAffine"
        self.rotation = _checks.ordered_pair("rotation", (0.0, rotation), owner, 0.0)[1]
        self.shear = _checks.ordered_pair("shear", (0.0, shear), owner, 0.0, 60.0)[1]
        self.scale = _checks.ordered_pair("scale", scale, owner, 0.0)
        if self.scale[0] <= 0.0:
            raise ValueError(f"{owner}: `scale` must have min > 0; received scale={scale!r}.")
        self.translate = _checks.ordered_pair("translate", (0.0, translate), owner, 0.0, 0.5)[1]
        if fill_mode not in self._FILL_MODES:
            raise ValueError(
                f"{owner}: `fill_mode` must be one of {self._FILL_MODES}; received "
                f"fill_mode={fill_mode!r}."
            )
        self.fill_mode = fill_mode
        self.fill_value = _checks.in_range("fill_value", fill_value, owner, 0.0, 1.0)

    def _inverse_maps(self, batch, h, w):
        """Per image, the map from output to input pixel indices: 8 projective coefficients."""
        apply = 1.0
        if self.p < 1.0:
            apply = ops.cast(self._uniform(batch) < self.p, "float32")
        degrees = math.pi / 180.0
        theta = self._uniform(batch, -self.rotation, self.rotation) * degrees * apply
        shear = ops.tan(self._uniform(batch, -self.shear, self.shear) * degrees) * apply
        zoom = 1.0 + (self._uniform(batch, self.scale[0], self.scale[1]) - 1.0) * apply
        tx = self._uniform(batch, -self.translate, self.translate) * w * apply
        ty = self._uniform(batch, -self.translate, self.translate) * h * apply
        # Forward map about the centre c: out = R(theta) Shear(shear) zoom (in - c) + c + t.
        # Its inverse, in = M (out - c - t) + c with M = zoom^-1 Shear(-shear) R(-theta).
        cos, sin = ops.cos(theta) / zoom, ops.sin(theta) / zoom
        m00, m01 = cos + shear * sin, sin - shear * cos
        m10, m11 = -sin, cos
        cx, cy = (w - 1) / 2.0, (h - 1) / 2.0
        a2 = cx - m00 * (cx + tx) - m01 * (cy + ty)
        b2 = cy - m10 * (cx + tx) - m11 * (cy + ty)
        zeros = ops.zeros_like(theta)
        return ops.stack([m00, m01, a2, m10, m11, b2, zeros, zeros], axis=1)

    def augment(self, images):
        h, w = images.shape[1], images.shape[2]
        if h is None or w is None:
            raise ValueError("RandomAffine: `images` need a static height and width.")
        transform = self._inverse_maps(ops.shape(images)[0], h, w)
        out = ops.image.affine_transform(
            images,
            transform,
            interpolation="bilinear",
            fill_mode=self.fill_mode,
            fill_value=self.fill_value,
        )
        return ops.clip(out, 0.0, 1.0)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "rotation": self.rotation,
                "shear": self.shear,
                "scale": list(self.scale),
                "translate": self.translate,
                "fill_mode": self.fill_mode,
                "fill_value": self.fill_value,
            }
        )
        return config


@keras.saving.register_keras_serializable(package=_PACKAGE)
class ViewAugmenter(keras.layers.Layer):
    """Turns a batch of images into several augmented views.

    Either one pipeline applied `views` times (independent randomness per view, as in
    SimCLR) or one pipeline per view (asymmetric views: BYOL, weak/strong, multi-crop).
    When every view has the same shape the views are stacked on axis 1, giving
    `(B, V, H, W, C)` as the multi-view losses and `ContrastiveModel` expect; otherwise
    (multi-crop) a tuple of `(B, H_v, W_v, C)` tensors is returned.

    Args:
        augmenters: a layer (or callable layer such as `keras.Sequential`) mapping
            `(B, H, W, C)` to `(B, H', W', C)`, or a list of them, one per view.
        views: number of views when `augmenters` is a single layer (>= 1).

    Example:

    ```python
    two_views = tfcontrast.layers.ViewAugmenter(
        tfcontrast.layers.simclr_augmentation(32), views=2)
    views = two_views(images)  # (B, 2, 32, 32, 3)
    ```
    """

    def __init__(self, augmenters, views: int | None = None, **kwargs):
        super().__init__(**kwargs)
        if isinstance(augmenters, (list, tuple)):
            augmenters = list(augmenters)
            if not augmenters:
                raise ValueError("ViewAugmenter: `augmenters` must not be empty.")
            if views is not None and views != len(augmenters):
                raise ValueError(
                    f"ViewAugmenter: `views`={views!r} does not match the {len(augmenters)} "
                    "augmenters given; leave views=None with a list of augmenters."
                )
            views = len(augmenters)
        else:
            views = 2 if views is None else views
            if not isinstance(views, int) or views < 1:
                raise ValueError(
                    f"ViewAugmenter: `views` must be an integer >= 1; received views={views!r}."
                )
            augmenters = [augmenters]
        for aug in augmenters:
            if not callable(aug):
                raise ValueError(
                    f"ViewAugmenter: `augmenters` must be callable layers; received {aug!r}."
                )
        self.augmenters = augmenters
        self.views = views

    def build(self, input_shape):
        # Each pipeline builds its own layers (Keras warns about a layer built without
        # its sub-layers); plain callables have nothing to build.
        for aug in self.augmenters:
            if isinstance(aug, keras.layers.Layer) and not aug.built:
                aug.build(input_shape)
        self.built = True

    def _pipelines(self):
        if len(self.augmenters) == 1:
            return [self.augmenters[0]] * self.views
        return self.augmenters

    def call(self, images, training=True):
        images = to_float_images(images)
        if training and len(self.augmenters) == 1 and self.views > 1:
            out = self._call_fused_crop(images)
            if out is not None:
                return out
        outs = [aug(images, training=training) for aug in self._pipelines()]
        shapes = {tuple(o.shape[1:]) for o in outs}
        if len(shapes) == 1:
            return ops.stack(outs, axis=1)
        return tuple(outs)

    def _call_fused_crop(self, images):
        """All views of one pipeline in a single pass, or None when not applicable.

        When the pipeline is a `RandomResizedCrop` followed only by tfcontrast per-image
        augmentations (the presets) and the backend is TensorFlow, every view is cropped
        by one `crop_and_resize` call straight into a `(B * V, h, w, C)` batch, image-major,
        and the rest of the pipeline runs once on it; the final reshape to
        `(B, V, h, w, C)` is free. This avoids running the pipeline V times and stacking
        the views (a full copy of the output). Randomness is per row, so each view still
        gets its own crop, flip, jitter and coin flips.
        """
        pipeline = self.augmenters[0]
        layers = list(pipeline.layers) if isinstance(pipeline, keras.Sequential) else [pipeline]
        if (
            not _use_tf_crop()
            or len(images.shape) != 4
            or None in tuple(images.shape[1:])
            or not layers
            or not isinstance(layers[0], RandomResizedCrop)
            or not all(isinstance(layer, _ImageAugmentation) for layer in layers)
        ):
            return None
        out = layers[0]._augment_views(images, self.views)
        for layer in layers[1:]:
            out = layer(out, training=True)
        return ops.reshape(out, (-1, self.views, *out.shape[1:]))

    def compute_output_shape(self, input_shape):
        shapes = [tuple(aug.compute_output_shape(input_shape)) for aug in self._pipelines()]
        if len({s[1:] for s in shapes}) == 1:
            s = shapes[0]
            return (s[0], self.views, *s[1:])
        return tuple(shapes)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "augmenters": [keras.saving.serialize_keras_object(a) for a in self.augmenters],
                "views": self.views if len(self.augmenters) == 1 else None,
            }
        )
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        augs = [keras.saving.deserialize_keras_object(a) for a in config.pop("augmenters")]
        return cls(augs if len(augs) > 1 else augs[0], **config)


# --- presets -------------------------------------------------------------------------


def _seeds(seed, n):
    """n distinct seeds derived from `seed` (None stays None: random)."""
    return [None if seed is None else seed * 1009 + i for i in range(n)]


def _blur_kernel(image_size: tuple[int, int]) -> int:
    """SimCLR: kernel 10% of the image side, odd."""
    k = max(3, int(0.1 * min(image_size)))
    return k if k % 2 == 1 else k + 1


def _color_distortion(strength, seeds, p_jitter=0.8, p_gray=0.2, byol=False):
    """Colour jitter followed by random grayscale, as one fused layer."""
    if byol:
        amounts = (0.4, 0.4, 0.2, 0.1)
    else:
        s = float(strength)
        amounts = (0.8 * s, 0.8 * s, 0.8 * s, min(0.5, 0.2 * s))
    return [ColorJitter(*amounts, p=p_jitter, grayscale=p_gray, seed=seeds[0])]


def simclr_augmentation(
    image_size=224,
    strength: float = 1.0,
    blur: bool = True,
    scale=(0.08, 1.0),
    seed: int | None = None,
    name: str = "simclr_augmentation",
) -> keras.Sequential:
    """SimCLR's augmentation for one view (Chen et al., 2020, appendix A).

    Random resized crop (scale 0.08-1), horizontal flip, colour jitter of `strength`
    (0.8 s brightness/contrast/saturation, 0.2 s hue) with p 0.8, grayscale with p 0.2, and
    (if `blur`) Gaussian blur with kernel 10% of the side, sigma 0.1-2, p 0.5.

    Args:
        image_size: output size, int or (height, width).
        strength: colour distortion strength (1.0 for ImageNet, 0.5 for CIFAR).
        blur: whether to blur (SimCLR blurs ImageNet, not CIFAR).
        scale: crop area range.
        seed: integer seed (each layer gets its own derived seed).
        name: name of the returned `keras.Sequential`.

    Returns:
        A `keras.Sequential` mapping `(B, H, W, 3)` to `(B, h, w, 3)` in [0, 1].

    Example:

    ```python
    augment = tfcontrast.layers.simclr_augmentation(224)
    ds = tfcontrast.data.multiview(images, augment, views=2, batch_size=256)
    ```
    """
    size = _checks.size_pair("image_size", image_size, "simclr_augmentation")
    _checks.non_negative("strength", strength, "simclr_augmentation")
    seeds = _seeds(seed, 5)
    layers = [
        RandomResizedCrop(*size, scale=scale, horizontal_flip=True, seed=seeds[0]),
        *_color_distortion(strength, seeds[2:4]),
    ]
    if blur:
        layers.append(GaussianBlur(_blur_kernel(size), (0.1, 2.0), p=0.5, seed=seeds[4]))
    return keras.Sequential(layers, name=name)


def cifar_augmentation(
    image_size=32, strength: float = 0.5, seed: int | None = None
) -> keras.Sequential:
    """SimCLR's CIFAR-10 augmentation: `simclr_augmentation` with strength 0.5, no blur."""
    return simclr_augmentation(
        image_size, strength=strength, blur=False, seed=seed, name="cifar_augmentation"
    )


def _byol_view(size, blur_p, solarize_p, seeds, name, scale=(0.08, 1.0)):
    return keras.Sequential(
        [
            RandomResizedCrop(*size, scale=scale, horizontal_flip=True, seed=seeds[0]),
            *_color_distortion(None, seeds[2:4], byol=True),
            GaussianBlur(_blur_kernel(size), (0.1, 2.0), p=blur_p, seed=seeds[4]),
            Solarize(0.5, p=solarize_p, seed=seeds[5]),
        ],
        name=name,
    )


def byol_augmentation(image_size=224, seed: int | None = None) -> ViewAugmenter:
    """BYOL's asymmetric pair (Grill et al., 2020, table 6).

    Both views: random resized crop, flip, colour jitter (0.4, 0.4, 0.2, 0.1) with p 0.8,
    grayscale p 0.2. View 1: blur p 1.0, no solarization. View 2: blur p 0.1, solarize p 0.2.

    Returns:
        A `ViewAugmenter` giving `(B, 2, h, w, 3)`.
    """
    size = _checks.size_pair("image_size", image_size, "byol_augmentation")
    seeds = _seeds(seed, 12)
    return ViewAugmenter(
        [
            _byol_view(size, 1.0, 0.0, seeds[:6], "byol_view_1"),
            _byol_view(size, 0.1, 0.2, seeds[6:], "byol_view_2"),
        ],
        name="byol_augmentation",
    )


def weak_strong_augmentation(
    image_size=224, strength: float = 1.0, blur: bool = True, seed: int | None = None
) -> ViewAugmenter:
    """A weak view (crop with scale 0.5-1 and flip) and a strong SimCLR view.

    Used by methods that predict a strong view from a weak one (e.g. FixMatch-style
    consistency, CoMatch, ReSSL).

    Returns:
        A `ViewAugmenter` giving `(B, 2, h, w, C)`: view 0 weak, view 1 strong.
    """
    size = _checks.size_pair("image_size", image_size, "weak_strong_augmentation")
    seeds = _seeds(seed, 3)
    weak = keras.Sequential(
        [
            RandomResizedCrop(*size, scale=(0.5, 1.0), horizontal_flip=True, seed=seeds[0]),
        ],
        name="weak_augmentation",
    )
    strong = simclr_augmentation(size, strength, blur, seed=seeds[2], name="strong_augmentation")
    return ViewAugmenter([weak, strong], name="weak_strong_augmentation")


def multi_crop_augmentation(
    global_size=224,
    local_size=96,
    num_local: int = 6,
    global_scale=(0.4, 1.0),
    local_scale=(0.05, 0.4),
    seed: int | None = None,
) -> ViewAugmenter:
    """Multi-crop (Caron et al., SwAV 2020 / DINO 2021): 2 global and N local views.

    Scales and blur/solarize probabilities follow DINO: global view 1 blur p 1.0, global
    view 2 blur p 0.1 and solarize p 0.2, local views blur p 0.5; all with flip, BYOL's
    colour jitter and grayscale.

    Returns:
        A `ViewAugmenter` returning a tuple: two `(B, G, G, 3)` global views followed by
        `num_local` `(B, L, L, 3)` local views (a single `(B, 2 + N, ...)` tensor when the
        sizes are equal).
    """
    gsize = _checks.size_pair("global_size", global_size, "multi_crop_augmentation")
    lsize = _checks.size_pair("local_size", local_size, "multi_crop_augmentation")
    if lsize[0] > gsize[0] or lsize[1] > gsize[1]:
        raise ValueError(
            "multi_crop_augmentation: local crops must not be larger than the global ones; "
            f"received local_size={local_size!r}, global_size={global_size!r}."
        )
    if not isinstance(num_local, int) or num_local < 0:
        raise ValueError(
            f"multi_crop_augmentation: `num_local` must be an integer >= 0; received num_local={num_local!r}."
        )
    seeds = _seeds(seed, 6 * (2 + num_local))
    views = [
        _byol_view(gsize, 1.0, 0.0, seeds[0:6], "global_view_1", scale=global_scale),
        _byol_view(gsize, 0.1, 0.2, seeds[6:12], "global_view_2", scale=global_scale),
    ]
    for i in range(num_local):
        s = seeds[12 + 6 * i : 18 + 6 * i]
        views.append(_byol_view(lsize, 0.5, 0.0, s, f"local_view_{i + 1}", scale=local_scale))
    return ViewAugmenter(views, name="multi_crop_augmentation")


def glyph_augmentation(
    rotation: float = 15.0,
    shear: float = 15.0,
    scale=(0.8, 1.2),
    translate: float = 0.15,
    seed: int | None = None,
) -> keras.Sequential:
    """Augmentation for glyphs: handwritten digits, characters, symbols, sketches.

    A small random affine change (`RandomAffine`: rotation, shear, zoom in and out,
    shift), mild brightness and contrast jitter (0.3, p 0.8) and light pixel noise
    (stddev 0.05, p 0.5). No flips (a mirrored 2 or R is another glyph), no hue,
    saturation or grayscale (glyphs carry no colour) and no blur or aggressive crops (the
    strokes of a small glyph are a few pixels wide; a crop to 8% of the area, SimCLR's
    photo setting, keeps a stroke fragment that no longer tells the class).

    The output has the input's size and channels (1 or 3). The default ranges (15 degrees
    of rotation and shear, zoom 0.8-1.2, shifts of 15%) are those of the classic
    handwriting augmentations; on a validation split of USPS they trained SimCLR
    embeddings as good as or better than ranges two thirds as wide (10 degrees, 0.85-1.1,
    10%); a third wider (20 degrees) tied on the backbone and lost on the projector
    (`benchmarks/README.md`).

    Args:
        rotation, shear, scale, translate: the `RandomAffine` ranges.
        seed: integer seed (each layer gets its own derived seed).

    Returns:
        A `keras.Sequential` mapping `(B, H, W, C)` to `(B, H, W, C)` in [0, 1].

    Example:

    ```python
    augment = tfcontrast.layers.glyph_augmentation(seed=0)
    model = ContrastiveModel(backbone, augmentation=augment, algorithm="simclr")
    ```
    """
    seeds = _seeds(seed, 3)
    return keras.Sequential(
        [
            RandomAffine(rotation, shear, scale, translate, seed=seeds[0]),
            ColorJitter(0.3, 0.3, 0.0, 0.0, p=0.8, seed=seeds[1]),
            RandomGaussianNoise(0.05, p=0.5, seed=seeds[2]),
        ],
        name="glyph_augmentation",
    )


def digits_augmentation(image_size=8, seed: int | None = None) -> keras.Sequential:
    """A mild crop-based augmentation for tiny grayscale digits (scikit-learn's 8x8).

    Random resized crop with scale 0.6-1 and ratio 0.8-1.25 (small zooms and shifts of
    about a pixel), mild brightness/contrast jitter (0.3, p 0.8) and light pixel noise
    (stddev 0.05, p 0.5). No flips (a flipped 2 is not a 2), no hue or saturation, no
    blur (8 pixels have no detail to spare). Digits stay recognisable: a 1-nearest
    neighbour on clean digits still classifies most augmented ones correctly (tested).
    `glyph_augmentation` is the preset for glyphs of any size.

    Returns:
        A `keras.Sequential` mapping `(B, H, W, 1)` to `(B, h, w, 1)` in [0, 1].
    """
    size = _checks.size_pair("image_size", image_size, "digits_augmentation")
    seeds = _seeds(seed, 3)
    return keras.Sequential(
        [
            RandomResizedCrop(*size, scale=(0.6, 1.0), ratio=(0.8, 1.25), seed=seeds[0]),
            ColorJitter(0.3, 0.3, 0.0, 0.0, p=0.8, seed=seeds[1]),
            RandomGaussianNoise(0.05, p=0.5, seed=seeds[2]),
        ],
        name="digits_augmentation",
    )


# --- named presets and the automatic choice ----------------------------------------

# Images up to this side are "small" (CIFAR-like photos, glyphs); larger ones are photos
# at ImageNet-like resolution, where SimCLR's blur and strong colour distortion apply.
SMALL_IMAGE_SIDE = 64

_PRESETS = {
    "natural": (
        lambda size, seed: simclr_augmentation(size, seed=seed),
        "SimCLR's ImageNet setting: crop (scale 0.08-1), flip, colour jitter, grayscale and blur",
    ),
    "small_natural": (
        lambda size, seed: cifar_augmentation(size, seed=seed),
        "SimCLR's CIFAR-10 setting: crop (scale 0.08-1), flip, colour jitter at strength "
        "0.5, no blur",
    ),
    "glyphs": (
        lambda size, seed: glyph_augmentation(seed=seed),
        "small rotation, shear, zoom and shift, mild brightness and contrast; no flips, no colour",
    ),
    "none": (
        lambda size, seed: keras.layers.Identity(name="no_augmentation"),
        "every view is the image itself (supervised losses, or views made upstream)",
    ),
}


def preset_names() -> list[str]:
    """Names accepted by `preset` (and `"auto"`)."""
    return sorted(_PRESETS)


def describe_preset(name: str) -> str:
    """One line saying what the preset `name` does."""
    return _PRESETS[_check_preset(name)][1]


def _check_preset(name):
    if name not in _PRESETS:
        raise ValueError(
            f"Unknown augmentation preset {name!r}; expected 'auto' or one of {preset_names()}."
            + _checks.did_you_mean(name, preset_names())
        )
    return name


def _colourless(sample) -> bool:
    """Whether 3-channel images are gray (R = G = B), e.g. grayscale files read as RGB."""
    import numpy as np

    sample = np.asarray(sample[:256], dtype=np.float32)
    return bool(np.all(np.abs(sample - sample[..., :1]) <= 1.0 / 255.0))


def choose_preset(image_shape, sample=None) -> tuple[str, str]:
    """The preset that fits images of `image_shape`, and why.

    - 1-channel (or gray 3-channel, when a `sample` of the images shows R = G = B) images
      of at most 64 px: `"glyphs"`; handwritten digits and characters are the common
      case, and their content does not survive flips or colour changes.
    - Other images of at most 64 px: `"small_natural"` (CIFAR-like photos).
    - Larger images: `"natural"` (its colour steps are skipped on 1-channel images).

    Args:
        image_shape: `(H, W, C)`.
        sample: optional images `(N, H, W, C)` (a few hundred are looked at), used to
            recognise gray images stored with 3 channels.

    Returns:
        `(name, reason)`: the preset name and a sentence saying why it was chosen.
    """
    height, width, channels = (int(v) for v in image_shape[-3:])
    side = min(height, width)
    gray = channels == 1 or (channels == 3 and sample is not None and _colourless(sample))
    kind = "1-channel" if channels == 1 else ("gray 3-channel" if gray else f"{channels}-channel")
    size = f"{height}x{width}"
    if side <= SMALL_IMAGE_SIDE and gray:
        return "glyphs", (
            f"{kind} images of {size} (<= {SMALL_IMAGE_SIDE} px) look like glyphs: digits, "
            "characters, sketches"
        )
    if side <= SMALL_IMAGE_SIDE:
        return "small_natural", (
            f"{kind} images of {size} (<= {SMALL_IMAGE_SIDE} px) in colour look like small photos"
        )
    return "natural", f"{kind} images of {size} (> {SMALL_IMAGE_SIDE} px) look like photos"


def preset(name: str, image_shape, seed: int | None = None, sample=None):
    """The augmentation layer of a named preset for images of `image_shape`.

    Args:
        name: `"auto"` (see `choose_preset`) or one of `preset_names()`:
            `"natural"`, `"small_natural"`, `"glyphs"`, `"none"`.
        image_shape: `(H, W, C)` of the images (the output keeps this size).
        seed: integer seed.
        sample: optional images for `"auto"` (see `choose_preset`).

    Returns:
        A Keras layer applied once per view (`ContrastiveModel(augmentation=...)`).

    Example:

    ```python
    augment = tfcontrast.layers.augmentation.preset("auto", (28, 28, 1))  # glyphs
    ```
    """
    if name == "auto":
        name, _ = choose_preset(image_shape, sample)
    build, _ = _PRESETS[_check_preset(name)]
    return build(tuple(int(v) for v in image_shape[-3:-1]), seed)


# DINO's local crops: 96 px of a 224 px image (about 0.43 of the side), each covering
# 5-40% of the image (Caron et al., 2021, section 3.1 and appendix).
LOCAL_SIDE = 96 / 224
LOCAL_SCALE = (0.05, 0.4)
# Small images have no resolution to spare: DINO's ratio makes 7 px crops of 16 px digits
# from 5-40% of the digit (a stroke or two). On the USPS validation split crops of 7, 10
# or 12 px did worse than two views, while crops kept at 16 px from 30-60% of the view
# were level at 1-NN and slightly above at 10 labels per class; on the test split, run
# once after that choice, 0.932 at 10 labels per class against 0.883 (benchmarks/README.md).
# So local crops are never made smaller than 16 px (or the image's side), and on small
# images (at most `SMALL_IMAGE_SIDE`, 64 px, as for the presets) a crop shows a large
# part of the view.
MIN_LOCAL_SIDE = 16
SMALL_IMAGE_LOCAL_SCALE = (0.3, 0.6)


def default_local_crops(height: int, width: int) -> tuple[tuple[int, int], tuple[float, float]]:
    """The local crops' default `(size, scale)` for images of `height` x `width`.

    Size: DINO's 96 / 224 of each side, but at least `MIN_LOCAL_SIDE` (16) px and at most
    the side. Scale: DINO's 5-40% of the view's area, or 30-60% on images whose shorter
    side is at most `SMALL_IMAGE_SIDE` (64) px, where a 5% crop is a fragment of a stroke.

    Example:

    ```python
    default_local_crops(224, 224)  # ((96, 96), (0.05, 0.4))
    default_local_crops(28, 28)  # ((16, 16), (0.3, 0.6))
    ```
    """
    sides = int(height), int(width)
    size = tuple(min(side, max(MIN_LOCAL_SIDE, round(LOCAL_SIDE * side))) for side in sides)
    small = min(sides) <= SMALL_IMAGE_SIDE
    return size, SMALL_IMAGE_LOCAL_SCALE if small else LOCAL_SCALE


def multi_crop_preset(
    name: str,
    image_shape,
    local_views: int,
    local_size=None,
    local_scale=None,
    global_views: int = 2,
    seed: int | None = None,
    sample=None,
) -> ViewAugmenter:
    """Multi-crop views from a named preset: `global_views` views of the preset at the
    image's size, then `local_views` small crops (a random crop of `local_scale` of the
    preset's view, resized to `local_size`; no flip beyond what the preset does).

    Args:
        name, image_shape, seed, sample: as in `preset`.
        local_views: number of local crops (>= 1).
        local_size: side (or `(h, w)`) of the local crops; `None` for
            `default_local_crops`: DINO's ratio of the side (96 / 224), but never below
            16 px (or the image's size, if smaller).
        local_scale: the fraction of the view's area a local crop covers, `(min, max)`;
            `None` for `default_local_crops`' choice by the image's size, whatever
            `local_size`: DINO's (0.05, 0.4), or (0.3, 0.6) on images of at most 64 px.
        global_views: number of full-size views (>= 2).

    Returns:
        A `ViewAugmenter` giving the global views then the local ones (a tuple of
        tensors when the sizes differ; `ContrastiveModel` encodes each size as a group).

    Raises:
        ValueError: local crops larger than the images, counts out of range.
    """
    owner = "multi_crop_preset"
    _checks.integer("local_views", local_views, owner, least=1)
    _checks.integer("global_views", global_views, owner, least=2)
    height, width = (int(v) for v in image_shape[-3:-1])
    default_size, default_scale = default_local_crops(height, width)
    if local_size is None:
        local_size = default_size
    if local_scale is None:
        local_scale = default_scale
    local = _checks.size_pair("local_size", local_size, owner)
    if local[0] > height or local[1] > width:
        raise ValueError(
            f"{owner}: local crops must not be larger than the images; received "
            f"local_size={local_size!r} for images of {height}x{width}."
        )
    low, high = _checks.fraction_range("local_scale", local_scale, owner)
    seeds = _seeds(seed, global_views + 2 * local_views)
    views = [preset(name, image_shape, seeds[i], sample) for i in range(global_views)]
    for i in range(local_views):
        own = seeds[global_views + 2 * i : global_views + 2 * i + 2]
        crop = RandomResizedCrop(*local, scale=(low, high), seed=own[1])
        views.append(
            keras.Sequential(
                [preset(name, image_shape, own[0], sample), crop], name=f"local_view_{i + 1}"
            )
        )
    return ViewAugmenter(views, name="multi_crop")


__all__ = [
    "RandomResizedCrop",
    "ColorJitter",
    "RandomGrayscale",
    "GaussianBlur",
    "Solarize",
    "RandomGaussianNoise",
    "RandomAffine",
    "ViewAugmenter",
    "simclr_augmentation",
    "cifar_augmentation",
    "byol_augmentation",
    "weak_strong_augmentation",
    "multi_crop_augmentation",
    "digits_augmentation",
    "glyph_augmentation",
    "choose_preset",
    "describe_preset",
    "preset",
    "multi_crop_preset",
    "default_local_crops",
    "preset_names",
    "to_float_images",
]
