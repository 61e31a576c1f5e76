"""Barlow Twins on scikit-learn's digits: push the cross-correlation to the identity.

Barlow Twins (Zbontar et al., ICML 2021) computes the cross-correlation matrix between
the batch-normalised projections of the two views and pushes it to the identity:
diagonal to 1 (invariance), off-diagonal to 0 weighted by `lambda_` (redundancy
reduction). `lambda_` scales with the projection size: the paper's 5e-3 is for 8192
dimensions; 0.02 suits the 256 used here.

    python examples/barlow_twins_digits.py            # full run
    python examples/barlow_twins_digits.py --smoke    # tiny subset, one epoch (tests)
"""

import _digits

from tfcontrast.layers import ProjectionHead, digits_augmentation
from tfcontrast.models import ContrastiveModel, algorithms


def main(argv=None):
    args = _digits.parse_args(__doc__, argv, epochs=40)
    data = _digits.load(args)

    model = ContrastiveModel(
        _digits.backbone(args),
        projector=ProjectionHead(hidden_dims=(256, 256), output_dim=256),
        algorithm=algorithms.BarlowTwins(lambda_=0.02),
        augmentation=digits_augmentation(8, seed=args.seed),
    )
    history = _digits.train(model, data, args)
    return _digits.evaluate(model, data, "Barlow Twins", history)


if __name__ == "__main__":
    main()
