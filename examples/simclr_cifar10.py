"""SimCLR on CIFAR-10 (tensorflow-datasets): ResNet-18, LARS, warm-up + cosine, kNN monitor.

The standard self-supervised CIFAR-10 recipe (Chen et al., ICML 2020, appendix B.9):
a CIFAR ResNet-18 (3x3 stem, no max-pool), two views per image from SimCLR's CIFAR
augmentation (crop, flip, colour jitter 0.5, grayscale; no blur), NT-Xent with
temperature 0.5, a 2048 -> 128 projector, LARS (learning rate 0.3 x batch / 256,
weight decay 1e-6) with 10 warm-up epochs then cosine decay. `KNNMonitor` logs the
kNN accuracy of the backbone features on the test set every `--knn_every` epochs
(about 80-85% after 200 epochs, 90%+ after 800; one epoch takes minutes on a GPU).

Data: `tfcontrast.data.from_tfds("cifar10")` reads CIFAR-10 from TFDS's data directory
(`--data_dir`, default `~/tensorflow_datasets` or `$TFDS_DATA_DIR`), downloading and
preparing it there on first use. On a machine without internet, prepare it elsewhere
(`python -c "import tensorflow_datasets as tfds; tfds.load('cifar10')"`) and copy the
`cifar10/` folder into the data directory.

`--mock` replaces the dataset by random images of the right shape
(`tfds.testing.mock_data`): it checks the pipeline runs, not that anything is learned.

    python examples/simclr_cifar10.py --epochs=200 --batch_size=512
    python examples/simclr_cifar10.py --smoke --mock     # seconds, no data needed (tests)
"""

import argparse
import contextlib
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402

import tfcontrast  # noqa: E402
from tfcontrast.layers import ProjectionHead, cifar_augmentation  # noqa: E402
from tfcontrast.models import ContrastiveModel, algorithms, backbones  # noqa: E402
from tfcontrast.models.callbacks import KNNMonitor  # noqa: E402
from tfcontrast.optimizers import LARS, warmup_cosine_decay  # noqa: E402


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=200)
    parser.add_argument("--batch_size", type=int, default=512)
    parser.add_argument("--warmup_epochs", type=int, default=10)
    parser.add_argument("--data_dir", default=None, help="TFDS data directory")
    parser.add_argument("--knn_every", type=int, default=10)
    parser.add_argument(
        "--knn_train_images",
        type=int,
        default=10000,
        help="labelled training images in the kNN memory bank",
    )
    parser.add_argument("--out", default="runs/simclr_cifar10", help="checkpoints go here")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--smoke", action="store_true", help="tiny model and data, one epoch")
    parser.add_argument("--mock", action="store_true", help="random images (tfds mock_data)")
    args = parser.parse_args(argv)
    if args.smoke:
        args.epochs, args.batch_size, args.warmup_epochs, args.knn_train_images = 1, 32, 0, 64
    return args


def to_arrays(dataset, limit):
    """The first `limit` `(image, label)` pairs of a dataset, as NumPy arrays."""
    images, labels = [], []
    for x, y in dataset.take(limit).batch(1024).as_numpy_iterator():
        images.append(x)
        labels.append(y)
    return np.concatenate(images), np.concatenate(labels)


def train(args):
    keras.utils.set_random_seed(args.seed)
    # 1. Data: two augmented views per image, made by tf.data ahead of the model.
    train_split = "train[:64]" if args.smoke else "train"
    train_data = tfcontrast.data.from_tfds("cifar10", split=train_split, data_dir=args.data_dir)
    views = tfcontrast.data.multiview(
        train_data,
        cifar_augmentation(32, seed=args.seed),
        views=2,
        batch_size=args.batch_size,
        seed=args.seed,
    )
    memory_x, memory_y = to_arrays(train_data, args.knn_train_images)
    test_x, test_y = to_arrays(
        tfcontrast.data.from_tfds("cifar10", split="test", data_dir=args.data_dir),
        64 if args.smoke else 10000,
    )

    # 2. Model: ResNet-18 backbone (served), SimCLR's projector and loss.
    model = ContrastiveModel(
        backbones.cifar_resnet18((32, 32, 3), width=8 if args.smoke else 64),
        projector=ProjectionHead(hidden_dims=(2048,), output_dim=128),
        algorithm=algorithms.SimCLR(temperature=0.5),
    )

    # 3. LARS with linear warm-up and cosine decay, per step.
    steps_per_epoch = max(1, int(views.cardinality()))
    schedule = warmup_cosine_decay(
        0.3 * args.batch_size / 256,
        steps_per_epoch * args.epochs,
        warmup_steps=steps_per_epoch * args.warmup_epochs,
    )
    model.compile(optimizer=LARS(schedule, momentum=0.9, weight_decay=1e-6), run_eagerly=args.smoke)

    # 4. Train, logging kNN accuracy and saving a checkpoint every epoch.
    callbacks = [
        KNNMonitor(
            memory_x, memory_y, test_x, test_y, k=min(200, len(memory_y)), every=args.knn_every
        ),
        keras.callbacks.BackupAndRestore(os.path.join(args.out, "backup")),  # resumable
    ]
    history = model.fit(views, epochs=args.epochs, callbacks=callbacks, verbose=2)
    knn = history.history["knn_top1"][-1]
    print(f"kNN top-1 accuracy on the CIFAR-10 test set: {knn:.3f}")
    return {"loss": float(history.history["loss"][-1]), "knn_accuracy": float(knn)}


def main(argv=None):
    args = parse_args(argv)
    mock = contextlib.nullcontext()
    if args.mock:
        import tensorflow_datasets as tfds

        mock = tfds.testing.mock_data(num_examples=64 if args.smoke else 512)
    with mock:
        return train(args)


if __name__ == "__main__":
    main()
