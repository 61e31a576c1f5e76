"""Trains tiny ContrastiveModels on the Keras backend named by KERAS_BACKEND; prints JSON.

Run by tests/test_backends.py in a subprocess (the backend must be chosen before keras
is imported). Everything that could differ between backends is fixed here: the weights
are set from a NumPy generator (Keras initializers draw different random streams per
backend), the views come ready-made (no random augmentation), no shuffling, plain SGD.

Usage: KERAS_BACKEND=jax python tests/_backend_fit_worker.py simclr byol moco_v2
"""

from __future__ import annotations

import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402

from tfcontrast.layers import PredictionHead, ProjectionHead  # noqa: E402
from tfcontrast.models import ContrastiveModel, algorithms, backbones  # noqa: E402

BATCH, STEPS, EPOCHS = 8, 2, 3


def make_algorithm(name):
    if name == "moco_v2":
        # A queue smaller than the data, so it wraps, and a momentum the few steps can move.
        return algorithms.MoCoV2(temperature=0.2, queue_size=12, momentum=0.9)
    if name == "moco_v3":
        return algorithms.MoCoV3(momentum=0.9)
    if name == "byol":
        return algorithms.BYOL(momentum=0.9)
    return algorithms.get(name)


def data(seed=0):
    rng = np.random.default_rng(seed)
    images = rng.uniform(size=(BATCH * STEPS, 8, 8, 1)).astype("float32")
    # Two fixed "views": the image and a shifted, noisy copy.
    other = np.roll(images, 1, axis=2) + 0.05 * rng.normal(size=images.shape).astype("float32")
    views = np.stack([images, other], axis=1)
    labels = np.tile(np.arange(4), BATCH * STEPS // 4).astype("int32")
    return views, labels


def set_weights(model, seed=1):
    rng = np.random.default_rng(seed)
    for weight in model.weights:
        if not weight.trainable:
            continue  # BatchNorm statistics, momentum targets, queues: their own init
        shape = tuple(weight.shape)
        fan_in = int(np.prod(shape[:-1])) if len(shape) > 1 else 1
        values = rng.normal(size=shape) / np.sqrt(max(fan_in, 1))
        if "gamma" in weight.path or "scale" in weight.path:
            values = 1.0 + 0.1 * values
        weight.assign(values.astype(weight.dtype))


def run(name):
    keras.utils.set_random_seed(0)
    algo = make_algorithm(name)
    model = ContrastiveModel(
        backbones.small_convnet((8, 8, 1), width=4, output_dim=8),
        projector=ProjectionHead((16,), 8),
        predictor=PredictionHead(16, 8) if algo.uses_predictor else None,
        algorithm=algo,
    )
    views, labels = data()
    model.build(views.shape)
    set_weights(model)
    # VICReg / Barlow Twins have large gradients (sums over D x D): a smaller step keeps
    # the trajectory from diverging, where any difference would be amplified.
    lr = 0.002 if name in ("vicreg", "barlow_twins") else 0.05
    model.compile(optimizer=keras.optimizers.SGD(lr, momentum=0.9))
    batch_losses = []
    record = keras.callbacks.LambdaCallback(
        on_train_batch_end=lambda batch, logs: batch_losses.append(float(logs["loss"]))
    )
    model.fit(
        views,
        labels if algo.needs_labels else None,
        batch_size=BATCH,
        epochs=EPOCHS,
        shuffle=False,
        verbose=0,
        callbacks=[record],
    )
    out = {
        "losses": batch_losses,
        "embedding": np.asarray(model.predict(views[:4, 0], verbose=0)).tolist(),
    }
    if getattr(model, "queue", None) is not None:
        out["queue_filled"] = int(model.queue.filled.numpy())
        out["queue_sum"] = float(np.sum(model.queue.buffer.numpy()))
    return out


def main(names):
    results = {"backend": keras.backend.backend()}
    for name in names:
        results[name] = run(name)
    print("RESULT " + json.dumps(results))


if __name__ == "__main__":
    main(sys.argv[1:])
