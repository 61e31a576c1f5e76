"""SwAV on scikit-learn's digits: swapped prediction of balanced cluster assignments.

SwAV (Caron et al., NeurIPS 2020) scores each view's normalised projection against `K`
learned prototypes. The batch's assignment to the prototypes (its "codes") is computed
by Sinkhorn-Knopp so that every prototype gets an equal share of the batch, which is
what prevents collapse; each view then predicts the other view's codes. The prototypes
stay frozen for the first steps (the paper: one epoch), while the codes are still
random. Settings for ~1,000 images: 100 prototypes (the paper's 3,000 serve 1,000
ImageNet classes) frozen for the first 10 steps (one epoch of batches of 128).

    python examples/swav_digits.py            # full run
    python examples/swav_digits.py --smoke    # tiny subset, one epoch (tests)
"""

import _digits

from tfcontrast.layers import ProjectionHead, digits_augmentation
from tfcontrast.models import ContrastiveModel, algorithms


def main(argv=None):
    args = _digits.parse_args(__doc__, argv, epochs=40, batch_size=128)
    data = _digits.load(args)

    model = ContrastiveModel(
        _digits.backbone(args),
        projector=ProjectionHead(hidden_dims=(256,), output_dim=64),
        algorithm=algorithms.SwAV(num_prototypes=100, freeze_prototypes_steps=10),
        augmentation=digits_augmentation(8, seed=args.seed),
    )
    history = _digits.train(model, data, args)
    return _digits.evaluate(model, data, "SwAV", history)


if __name__ == "__main__":
    main()
