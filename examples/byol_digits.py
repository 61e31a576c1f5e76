"""BYOL on scikit-learn's digits: no negatives, a predictor and an EMA target network.

BYOL (Grill et al., NeurIPS 2020) trains an online network (backbone, projector,
predictor) to predict the projection that a momentum (EMA) target network gives of the
other view. The target's momentum rises from `momentum` to 1 along a cosine over
training (`ContrastiveModel.fit` counts the steps). The predictor is what keeps BYOL
from collapsing; pass a small one here (the paper's is 4096 wide). BYOL needs more
steps than the contrastive methods: batches of 128 (twice the steps of 256) help.

    python examples/byol_digits.py            # full run
    python examples/byol_digits.py --smoke    # tiny subset, one epoch (tests)
"""

import _digits

from tfcontrast.layers import PredictionHead, ProjectionHead, digits_augmentation
from tfcontrast.models import ContrastiveModel, algorithms


def main(argv=None):
    args = _digits.parse_args(__doc__, argv, epochs=40, batch_size=128)
    data = _digits.load(args)

    model = ContrastiveModel(
        _digits.backbone(args),
        projector=ProjectionHead(hidden_dims=(256,), output_dim=64),
        predictor=PredictionHead(hidden_dim=256, output_dim=64),
        algorithm=algorithms.BYOL(momentum=0.99),
        augmentation=digits_augmentation(8, seed=args.seed),
    )
    history = _digits.train(model, data, args)
    return _digits.evaluate(model, data, "BYOL", history)


if __name__ == "__main__":
    main()
