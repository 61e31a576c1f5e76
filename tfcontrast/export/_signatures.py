"""The serving signatures of an embedding model, written with `keras.export.ExportArchive`.

- `serving_default`: float images `(B, H, W, C)` named `images` -> `embedding`, float32
  `(B, D)`, L2-normalized, with the optional preprocessing baked in.
- `serving_bytes`: encoded images named `image_bytes` -> the same `embedding`.
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

#: Output name of both signatures.
OUTPUT_NAME = "embedding"
#: Input name of `serving_default` (float images).
IMAGES_INPUT_NAME = "images"
#: Input name of `serving_bytes` (encoded images). The `_bytes` suffix is what REST
#: front ends (TF Serving, Vertex AI) key base64 decoding on.
BYTES_INPUT_NAME = "image_bytes"
BYTES_SIGNATURE = "serving_bytes"


def _embedding_fn(model, preprocessing, image_shape):
    def embed(images):
        x = tf.cast(images, tf.float32)
        if preprocessing is not None:
            x = preprocessing(x)
        y = model(x, training=False)
        if isinstance(y, (dict, list, tuple)):
            raise ValueError(
                "export: the model must return one embedding tensor (B, D) for images "
                f"(B, {', '.join(map(str, image_shape))}); it returned a {type(y).__name__}."
            )
        if len(y.shape) != 2:
            raise ValueError(
                "export: the model must return embeddings (B, D); it returns shape "
                f"{tuple(y.shape)}. Add pooling/flattening to the model."
            )
        y = tf.cast(y, tf.float32)
        return {OUTPUT_NAME: tf.math.l2_normalize(y, axis=-1)}

    return embed


def _bytes_fn(embed, image_shape, pixel_scale):
    height, width, channels = image_shape

    def decode(encoded):
        image = tf.io.decode_image(
            encoded, channels=channels, dtype=tf.uint8, expand_animations=False
        )
        image = tf.image.resize(tf.cast(image, tf.float32), (height, width), method="bilinear")
        return tf.ensure_shape(image, image_shape)

    def embed_bytes(image_bytes):
        images = tf.map_fn(
            decode,
            image_bytes,
            fn_output_signature=tf.TensorSpec(image_shape, tf.float32),
        )
        return embed(images * tf.constant(pixel_scale, tf.float32))

    return embed_bytes


def write_archive(model, preprocessing, image_shape, pixel_scale, directory, with_bytes):
    """Writes a SavedModel with `serving_default` (and `serving_bytes` when asked)."""
    archive = keras.export.ExportArchive()
    archive.track(model)
    if isinstance(preprocessing, keras.layers.Layer):
        archive.track(preprocessing)
    embed = _embedding_fn(model, preprocessing, image_shape)
    archive.add_endpoint(
        "serving_default",
        embed,
        input_signature=[
            tf.TensorSpec((None,) + tuple(image_shape), tf.float32, name=IMAGES_INPUT_NAME)
        ],
    )
    if with_bytes:
        archive.add_endpoint(
            BYTES_SIGNATURE,
            _bytes_fn(embed, image_shape, pixel_scale),
            input_signature=[tf.TensorSpec((None,), tf.string, name=BYTES_INPUT_NAME)],
        )
    archive.write_out(str(directory), verbose=False)


def signature_details(image_shape, dim: int) -> dict:
    """The signatures' inputs and outputs as the parity report records them."""
    output = {OUTPUT_NAME: ["float32", [None, int(dim)]]}
    return {
        "serving_default": {
            "inputs": {IMAGES_INPUT_NAME: ["float32", [None, *image_shape]]},
            "outputs": output,
        },
        BYTES_SIGNATURE: {"inputs": {BYTES_INPUT_NAME: ["string", [None]]}, "outputs": output},
    }


def run_signature(signature, array, batch_size=256) -> np.ndarray:
    """The `embedding` output of a loaded signature on `array`, in batches."""
    (name,) = signature.structured_input_signature[1].keys()
    outputs = []
    for start in range(0, len(array), batch_size):
        result = signature(**{name: tf.constant(array[start : start + batch_size])})
        outputs.append(result[OUTPUT_NAME].numpy())
    return np.concatenate(outputs)


def encode_png(images_uint8) -> list[bytes]:
    return [tf.io.encode_png(image).numpy() for image in images_uint8]
