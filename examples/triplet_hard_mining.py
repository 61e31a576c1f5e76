"""Triplet loss with batch-hard mining on class-balanced P x K batches (digits).

Batch-hard mining (Hermans et al., 2017) takes, for every anchor, its farthest positive
and its closest negative in the batch; the soft-margin triplet loss
`log(1 + exp(d(a, p) - d(a, n)))` on Euclidean distances follows the same paper. It needs positives in every batch, so batches
are drawn class-balanced with `tfcontrast.data.class_balanced`: P classes x K images
each (here 10 x 16), augmented on the fly. `--xbm` wraps the loss in
`CrossBatchMemory`, which also mines in the embeddings of the last 1024 images
(Wang et al., CVPR 2020), giving harder negatives than one batch holds.

Reports retrieval on the held-out digits (each test digit queries the other test
digits: precision@1 and MAP@R) and kNN / 10-labels-per-class 1-NN accuracy beside raw
pixels.

    python examples/triplet_hard_mining.py            # full run
    python examples/triplet_hard_mining.py --xbm      # with a cross-batch memory
    python examples/triplet_hard_mining.py --smoke    # tiny subset, one epoch (tests)
"""

import _digits
import keras
import numpy as np

import tfcontrast
from tfcontrast.evaluation import retrieval_metrics
from tfcontrast.layers import digits_augmentation


def flags(parser):
    parser.add_argument("--classes_per_batch", type=int, default=10, help="P")
    parser.add_argument("--examples_per_class", type=int, default=16, help="K")
    parser.add_argument("--xbm", action="store_true", help="add a cross-batch memory")


def main(argv=None):
    args = _digits.parse_args(__doc__, argv, epochs=30, extra=flags)
    data = x_train, y_train, x_test, y_test = _digits.load(args)
    if args.smoke:
        args.examples_per_class = 8

    batch = args.classes_per_batch * args.examples_per_class
    steps_per_epoch = max(1, len(x_train) // batch) if not args.smoke else 2
    batches = tfcontrast.data.class_balanced(
        x_train,
        y_train,
        classes_per_batch=args.classes_per_batch,
        examples_per_class=args.examples_per_class,
        augmenter=digits_augmentation(8, seed=args.seed),
        seed=args.seed,
    )

    model = _digits.backbone(args, output_dim=64)  # images -> 64-d embeddings
    # Hermans et al.'s setting: soft margin, Euclidean distance. (A hinge on cosine
    # distance from scratch collapses here: every triplet stalls at loss = margin.)
    loss = tfcontrast.losses.TripletLoss(soft_margin=True, miner="hard", distance="euclidean")
    if args.xbm:
        loss = tfcontrast.losses.CrossBatchMemory(loss, memory_size=1024, embedding_dim=64)
    total_steps = steps_per_epoch * args.epochs
    schedule = tfcontrast.optimizers.warmup_cosine_decay(
        args.learning_rate, total_steps, warmup_steps=total_steps // 10
    )
    model.compile(optimizer=keras.optimizers.Adam(schedule), loss=loss, run_eagerly=args.smoke)
    history = model.fit(batches, steps_per_epoch=steps_per_epoch, epochs=args.epochs, verbose=2)

    result = _digits.evaluate(model, data, "triplet" + (" + XBM" if args.xbm else ""), history)
    test_emb = np.asarray(model.predict(x_test, verbose=0))
    retrieval = retrieval_metrics(test_emb, y_test, ks=(1, 5))  # leave-one-out on test
    flat = x_test.reshape(len(x_test), -1)
    pixels = retrieval_metrics(flat, y_test, ks=(1, 5))
    print(
        f"retrieval on test: precision@1 {retrieval['precision_at_1']:.3f} "
        f"(pixels {pixels['precision_at_1']:.3f}), MAP@R {retrieval['map_at_r']:.3f} "
        f"(pixels {pixels['map_at_r']:.3f})"
    )
    result.update(precision_at_1=retrieval["precision_at_1"], map_at_r=retrieval["map_at_r"])
    return result


if __name__ == "__main__":
    main()
