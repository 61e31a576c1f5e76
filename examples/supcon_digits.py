"""Supervised contrastive learning (SupCon) on scikit-learn's digits.

SupCon (Khosla et al., NeurIPS 2020) is SimCLR with labels: every augmented view of
every image of the same class is a positive. `ContrastiveModel(algorithm="supcon")`
makes two views per image with `digits_augmentation` and needs the labels in `fit`.
The served embedding (backbone features) is scored on held-out digits by kNN and by
1-NN from 10 labelled images per class, beside raw pixels.

    python examples/supcon_digits.py            # full run
    python examples/supcon_digits.py --smoke    # tiny subset, one epoch (tests)
"""

import _digits

from tfcontrast.layers import ProjectionHead, digits_augmentation
from tfcontrast.models import ContrastiveModel, algorithms


def main(argv=None):
    args = _digits.parse_args(__doc__, argv, epochs=40)
    data = _digits.load(args)

    model = ContrastiveModel(
        _digits.backbone(args),
        projector=ProjectionHead(hidden_dims=(256,), output_dim=64),
        algorithm=algorithms.SupCon(temperature=0.1),
        augmentation=digits_augmentation(8, seed=args.seed),  # 2 views per image
    )
    history = _digits.train(model, data, args, labels=True)  # fit(x_train, y_train)
    return _digits.evaluate(model, data, "SupCon", history)


if __name__ == "__main__":
    main()
