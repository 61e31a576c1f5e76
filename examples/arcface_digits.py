"""ArcFace on scikit-learn's digits, then a match threshold calibrated for 99% precision.

A proxy loss learns one vector per class (the `Proxies` layer, owned by the model so that
`fit` trains it and `save` keeps it) and pulls each embedding towards its class's proxy
with an angular margin. The trained embedding fills an `Index`; half of the held-out
digits calibrate the threshold at which a nearest neighbour is accepted as a match, and
the other half measure what that threshold gives: how often an accepted answer is right,
and how many queries get one.

    python examples/arcface_digits.py            # full run (about two minutes on 2 cores)
    python examples/arcface_digits.py --smoke    # one short epoch, for the test suite
"""

import _digits
import keras
import numpy as np

import tfcontrast
from tfcontrast.retrieval import Index


def main(argv=None):
    args = _digits.parse_args(
        __doc__,
        argv,
        epochs=40,
        batch_size=128,
        extra=lambda p: p.add_argument("--target_precision", type=float, default=0.99),
    )
    x_train, y_train, x_test, y_test = _digits.load(args)

    loss = tfcontrast.losses.ArcFaceLoss(num_classes=10, embedding_dim=64, lr_multiplier=10.0)
    inputs = keras.Input((8, 8, 1))
    h = keras.layers.Conv2D(32, 3, padding="same", activation="relu")(inputs)
    h = keras.layers.Conv2D(64, 3, padding="same", activation="relu")(h)
    h = keras.layers.GlobalAveragePooling2D()(h)
    embeddings = loss.proxies(keras.layers.Dense(64)(h))  # an identity that owns the proxies
    model = keras.Model(inputs, embeddings)
    model.compile(optimizer=keras.optimizers.Adam(args.learning_rate / 2), loss=loss)
    model.fit(x_train, y_train, batch_size=args.batch_size, epochs=args.epochs, verbose=2)

    index = Index(metric="cosine").add(model.predict(x_train, verbose=0), labels=y_train)
    held_out = model.predict(x_test, verbose=0)
    order = np.random.default_rng(0).permutation(len(x_test))
    calibration, measured = order[: len(order) // 2], order[len(order) // 2 :]
    try:
        result = index.calibrate(
            held_out[calibration], y_test[calibration], target_precision=args.target_precision
        )
    except ValueError as error:  # e.g. every nearest label already right: nothing to reject
        print(f"calibration: {error}")
        return None
    match = index.match(held_out[measured])
    accepted = match.known
    precision = float(np.mean(match.labels[accepted] == y_test[measured][accepted]))
    nearest = index.search(held_out[measured], k=1).labels[:, 0]
    print(
        f"1-NN accuracy on the held-out half: {np.mean(nearest == y_test[measured]):.3f}\n"
        f"threshold {result.threshold:.4f} (cosine) for precision {args.target_precision}: "
        f"{precision:.3f} of the accepted answers are right, "
        f"{np.mean(accepted):.3f} of the queries get one"
    )
    return precision, float(np.mean(accepted))


if __name__ == "__main__":
    main()
