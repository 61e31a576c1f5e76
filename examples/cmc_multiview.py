"""Contrastive Multiview Coding (CMC) with three views of each digit.

CMC (Tian, Krishnan & Isola, ECCV 2020) learns one encoder per view of the same scene
(luminance, colour, depth...) and contrasts the views with each other: two views of the
same scene are a positive pair, views of other scenes are negatives. Here the views of
an 8x8 digit are its full image, its top half and its bottom half, each with its own
small ConvNet. `MultiViewContrastiveLoss` takes the stacked embeddings `(B, 3, D)`;
`--mode=core_view` contrasts the full image with each half, `full_graph` every pair.

As in CMC, the representation is the concatenation of the views' features. It is scored
on held-out digits by kNN and 1-NN from 10 labelled images per class, beside the full
view's features alone and raw pixels.

    python examples/cmc_multiview.py            # full run
    python examples/cmc_multiview.py --smoke    # tiny subset, one epoch (tests)
"""

import _digits
import keras

import tfcontrast
from tfcontrast.layers import digits_augmentation


def flags(parser):
    parser.add_argument("--mode", choices=["core_view", "full_graph"], default="full_graph")
    parser.add_argument("--temperature", type=float, default=0.1)


def main(argv=None):
    args = _digits.parse_args(__doc__, argv, epochs=40, extra=flags)
    data = x_train, y_train, x_test, y_test = _digits.load(args)

    images = keras.Input((8, 8, 1), name="images")
    augmented = digits_augmentation(8, seed=args.seed)(images)  # training only
    views = {
        "full": augmented,
        "top": keras.layers.Cropping2D(((0, 4), (0, 0)))(augmented),  # rows 0-3
        "bottom": keras.layers.Cropping2D(((4, 0), (0, 0)))(augmented),  # rows 4-7
    }
    # One encoder per view (a small ConvNet each), as in CMC.
    features = [_digits.backbone(args, 64, v.shape[1:], name=k)(v) for k, v in views.items()]
    model = keras.Model(images, keras.ops.stack(features, axis=1))  # (B, 3, 64), full first

    loss = tfcontrast.losses.MultiViewContrastiveLoss(temperature=args.temperature, mode=args.mode)
    model.compile(
        optimizer=keras.optimizers.Adam(args.learning_rate), loss=loss, run_eagerly=args.smoke
    )
    history = model.fit(
        x_train,
        None,
        batch_size=args.batch_size,
        epochs=args.epochs,
        verbose=2 if args.smoke else 0,
    )

    # The served representation: all views' features, concatenated (CMC, section 4).
    concatenated = keras.Model(images, keras.layers.Flatten()(model.output))
    full_only = keras.Model(images, features[0])
    full = _digits.evaluate(full_only, data, "full view")
    result = _digits.evaluate(concatenated, data, "CMC (concat)", history)
    result["full_view_knn_accuracy"] = full["knn_accuracy"]
    return result


if __name__ == "__main__":
    main()
