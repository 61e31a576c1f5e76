"""SimSiam on scikit-learn's digits: a predictor and a stop-gradient, nothing else.

SimSiam (Chen & He, CVPR 2021) is BYOL without the momentum encoder: each view's
prediction regresses the other view's projection through a stop-gradient. Without the
predictor or the stop-gradient it collapses; the final `embedding_std` and
`effective_rank` logged by `CollapseMonitor` show whether it did (std near
`1/sqrt(128)` and a rank well above 1 are healthy).

    python examples/simsiam_digits.py            # full run
    python examples/simsiam_digits.py --smoke    # tiny subset, one epoch (tests)
"""

import _digits

from tfcontrast.layers import PredictionHead, ProjectionHead, digits_augmentation
from tfcontrast.models import ContrastiveModel, algorithms
from tfcontrast.models.callbacks import CollapseMonitor


def main(argv=None):
    args = _digits.parse_args(__doc__, argv, epochs=40)
    data = _digits.load(args)

    model = ContrastiveModel(
        _digits.backbone(args),
        # SimSiam's projector ends with BatchNorm; its predictor is a bottleneck.
        projector=ProjectionHead(hidden_dims=(256,), output_dim=64, output_batch_norm=True),
        predictor=PredictionHead(hidden_dim=32, output_dim=64),
        algorithm=algorithms.SimSiam(),
        augmentation=digits_augmentation(8, seed=args.seed),
    )
    monitor = CollapseMonitor(data[2], every=max(1, args.epochs // 4))  # test images
    history = _digits.train(model, data, args, callbacks=[monitor])
    result = _digits.evaluate(model, data, "SimSiam", history)
    result["effective_rank"] = history.history["effective_rank"][-1]
    print(
        f"embedding std {history.history['embedding_std'][-1]:.4f}, "
        f"effective rank {result['effective_rank']:.1f} (collapse: rank near 1)"
    )
    return result


if __name__ == "__main__":
    main()
