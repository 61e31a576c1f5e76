"""Triplet loss with semi-hard mining on scikit-learn's digits (8x8 real images).

Trains a small embedding network with `compile` + `fit` and compares 1-nearest-neighbour
accuracy on held-out digits before and after training, and against raw pixels.

    python examples/triplet_digits.py            # full run (about a minute on 2 cores)
    python examples/triplet_digits.py --smoke    # one short epoch, for the test suite
"""

import argparse

import keras
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from sklearn.neighbors import KNeighborsClassifier

import tfcontrast


def one_nn_accuracy(train_x, train_y, test_x, test_y):
    knn = KNeighborsClassifier(n_neighbors=1, metric="cosine").fit(train_x, train_y)
    return knn.score(test_x, test_y)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--smoke", action="store_true", help="one short epoch")
    args = parser.parse_args(argv)

    keras.utils.set_random_seed(0)
    digits = load_digits()
    x = (digits.images / 16.0).astype("float32")[..., None]
    y = digits.target.astype("int32")
    x_train, x_test, y_train, y_test = train_test_split(
        x, y, test_size=0.3, random_state=0, stratify=y
    )
    if args.smoke:
        x_train, y_train, args.epochs = x_train[:256], y_train[:256], 1

    model = keras.Sequential(
        [
            keras.Input((8, 8, 1)),
            keras.layers.Conv2D(32, 3, padding="same", activation="relu"),
            keras.layers.Conv2D(64, 3, padding="same", activation="relu"),
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(64),
        ]
    )
    model.compile(
        optimizer=keras.optimizers.Adam(1e-3), loss=tfcontrast.losses.TripletLoss(miner="semi_hard")
    )
    before = one_nn_accuracy(
        model.predict(x_train, verbose=0), y_train, model.predict(x_test, verbose=0), y_test
    )
    model.fit(x_train, y_train, batch_size=128, epochs=args.epochs, verbose=2)
    after = one_nn_accuracy(
        model.predict(x_train, verbose=0), y_train, model.predict(x_test, verbose=0), y_test
    )
    pixels = one_nn_accuracy(
        x_train.reshape(len(x_train), -1), y_train, x_test.reshape(len(x_test), -1), y_test
    )
    print(
        f"1-NN accuracy: raw pixels {pixels:.3f} | untrained {before:.3f} | "
        f"triplet-trained {after:.3f}"
    )
    return after


if __name__ == "__main__":
    main()
