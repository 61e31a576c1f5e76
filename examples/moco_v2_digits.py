"""MoCo v2 on scikit-learn's digits: a momentum key encoder and a queue of negatives.

MoCo v2 (Chen et al., 2020) encodes the query view with the online network and the key
view with a momentum (EMA) copy of it; each query is contrasted with its key and with a
queue of keys from past batches, so the negatives outnumber the batch. The queue and
the momentum encoder live inside `ContrastiveModel` (saved with it, updated in-graph).
On 1257 digits a queue of 1024 keys and momentum 0.99 replace the paper's 65536 / 0.999
(ImageNet-sized). The projector has no BatchNorm, as in the paper.

    python examples/moco_v2_digits.py            # full run
    python examples/moco_v2_digits.py --smoke    # tiny subset, one epoch (tests)
"""

import _digits

from tfcontrast.layers import ProjectionHead, digits_augmentation
from tfcontrast.models import ContrastiveModel, algorithms


def main(argv=None):
    args = _digits.parse_args(__doc__, argv, epochs=40)
    data = _digits.load(args)

    model = ContrastiveModel(
        _digits.backbone(args),
        projector=ProjectionHead(hidden_dims=(256,), output_dim=64, batch_norm=False),
        algorithm=algorithms.MoCoV2(temperature=0.2, queue_size=1024, momentum=0.99),
        augmentation=digits_augmentation(8, seed=args.seed),
    )
    history = _digits.train(model, data, args)
    return _digits.evaluate(model, data, "MoCo v2", history)


if __name__ == "__main__":
    main()
