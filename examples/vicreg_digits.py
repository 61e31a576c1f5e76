"""VICReg on scikit-learn's digits: invariance, variance and covariance terms.

VICReg (Bardes, Ponce & LeCun, ICLR 2022) needs neither negatives nor a momentum
encoder: it pulls the two views' projections together (invariance, weight 25), keeps
every projection dimension's standard deviation above 1 across the batch (variance, 25)
and decorrelates the dimensions (covariance, 1). The paper's "expander" is 3 layers of
8192; 2 layers of 256 suffice for 8x8 digits.

    python examples/vicreg_digits.py            # full run
    python examples/vicreg_digits.py --smoke    # tiny subset, one epoch (tests)
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
        algorithm=algorithms.VICReg(
            invariance_weight=25.0, variance_weight=25.0, covariance_weight=1.0
        ),
        augmentation=digits_augmentation(8, seed=args.seed),
    )
    history = _digits.train(model, data, args)
    return _digits.evaluate(model, data, "VICReg", history)


if __name__ == "__main__":
    main()
