"""NNCLR on scikit-learn's digits: nearest neighbours from a support set as positives.

NNCLR (Dwibedi et al., ICCV 2021) is SimCLR whose positive for a view is not the other
view of the same image but the nearest neighbour of that view's projection in a support
set of past projections (a FIFO queue kept in the model, updated only in training): a
different image of (very likely) the same kind, a positive no augmentation makes. As in
BYOL, a predictor head sits on the projector. The support set holds 512 projections
(the paper's 98,304 serve ImageNet: on 1,257 digits a long queue would hold stale copies
of each image, whose nearest neighbour would be itself).

    python examples/nnclr_digits.py            # full run
    python examples/nnclr_digits.py --smoke    # tiny subset, one epoch (tests)
"""

import _digits

from tfcontrast.layers import PredictionHead, ProjectionHead, digits_augmentation
from tfcontrast.models import ContrastiveModel, algorithms


def main(argv=None):
    args = _digits.parse_args(__doc__, argv, epochs=40)
    data = _digits.load(args)

    model = ContrastiveModel(
        _digits.backbone(args),
        projector=ProjectionHead(hidden_dims=(256,), output_dim=64, output_batch_norm=True),
        predictor=PredictionHead(hidden_dim=256, output_dim=64),
        algorithm=algorithms.NNCLR(temperature=0.1, queue_size=512),
        augmentation=digits_augmentation(8, seed=args.seed),
    )
    history = _digits.train(model, data, args)
    return _digits.evaluate(model, data, "NNCLR", history)


if __name__ == "__main__":
    main()
