"""Worker process of the MultiWorkerMirroredStrategy tests (not collected by pytest).

    python _multi_worker.py OUT_DIR INDEX PORT0,PORT1 [KILL_EPOCH KILL_BATCH]

runs worker `INDEX` of a 2-worker cluster on 127.0.0.1 (`TF_CONFIG` built from the
ports): a SimCLR `ContrastiveModel` trained by `fit` for `EPOCHS` epochs with
`keras.callbacks.BackupAndRestore`, logging every epoch it starts and ends to
`OUT_DIR/epochs_<INDEX>.jsonl` and saving its final weights to
`OUT_DIR/weights_<INDEX>.npz`. With `KILL_EPOCH KILL_BATCH` this worker dies
(`os._exit`) when it reaches that batch, as a preempted machine would.

`reference_weights()` trains the same model on one device in the calling process.
"""

from __future__ import annotations

import json
import os
import sys

EPOCHS = 3
STEPS = 2
GLOBAL_BATCH = 8


def data():
    import numpy as np

    rng = np.random.default_rng(0)
    return rng.normal(size=(STEPS * GLOBAL_BATCH, 2, 4, 4, 1)).astype("float32")


def dataset():
    import tensorflow as tf

    # No shuffling: every epoch sees the same batches, so a resumed run can be compared
    # with an uninterrupted one weight for weight.
    return tf.data.Dataset.from_tensor_slices(data()).batch(GLOBAL_BATCH)


def make_model():
    import keras

    from tfcontrast.layers import ProjectionHead
    from tfcontrast.models import ContrastiveModel

    keras.utils.set_random_seed(0)
    inputs = keras.Input((4, 4, 1))
    x = keras.layers.Flatten()(inputs)
    x = keras.layers.Dense(12, activation="relu")(x)
    backbone = keras.Model(inputs, keras.layers.Dense(8)(x))
    # No BatchNorm, so one device and many compute the same thing.
    model = ContrastiveModel(
        backbone, projector=ProjectionHead((12,), 6, batch_norm=False), algorithm="simclr"
    )
    model.compile(optimizer=keras.optimizers.SGD(0.5, momentum=0.9))
    return model


def reference_weights(epochs=EPOCHS):
    """Weights after `epochs` uninterrupted epochs on one device."""
    import numpy as np

    model = make_model()
    model.fit(dataset(), epochs=epochs, verbose=0)
    return [np.asarray(w) for w in model.get_weights()]


def main():
    out_dir, index, ports = sys.argv[1], int(sys.argv[2]), sys.argv[3].split(",")
    kill = (int(sys.argv[4]), int(sys.argv[5])) if len(sys.argv) > 5 else None
    os.environ["TF_CONFIG"] = json.dumps(
        {
            "cluster": {"worker": [f"127.0.0.1:{port}" for port in ports]},
            "task": {"type": "worker", "index": index},
        }
    )
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

    import keras
    import numpy as np
    import tensorflow as tf

    from tfcontrast import distribute

    strategy = distribute.get_strategy("auto")
    assert isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy), strategy
    with strategy.scope():
        model = make_model()
        # Built in the scope so that every variable is mirrored. (ContrastiveModel.fit
        # builds an unbuilt model outside the scope; see the distribute notes.)
        model.build((None, 2, 4, 4, 1))

    log_path = os.path.join(out_dir, f"epochs_{index}.jsonl")
    state = {"epoch": None}

    class EpochLog(keras.callbacks.Callback):
        def _log(self, event, epoch):
            with open(log_path, "a") as f:
                f.write(json.dumps({"event": event, "epoch": epoch}) + "\n")

        def on_epoch_begin(self, epoch, logs=None):
            state["epoch"] = epoch
            self._log("begin", epoch)

        def on_epoch_end(self, epoch, logs=None):
            self._log("end", epoch)

        def on_train_batch_begin(self, batch, logs=None):
            if kill is not None and (state["epoch"], batch) == kill:
                self._log("killed", state["epoch"])
                os._exit(17)

    # Each worker backs up to its own directory: the workers hold identical weights, and
    # one shared file would be written by both at once.
    backup = keras.callbacks.BackupAndRestore(os.path.join(out_dir, "backup", f"worker{index}"))
    model.fit(dataset(), epochs=EPOCHS, verbose=0, callbacks=[backup, EpochLog()])
    np.savez(
        os.path.join(out_dir, f"weights_{index}.npz"),
        *[np.asarray(w) for w in model.get_weights()],
    )


if __name__ == "__main__":
    main()
