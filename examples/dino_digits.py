"""DINO on scikit-learn's digits: self-distillation, with an online linear probe.

DINO (Caron et al., ICCV 2021) trains a student to match, from the other view, a
momentum (EMA) teacher's distribution over `K` prototypes. The teacher's outputs are
centred (a running mean, against one prototype winning) and sharpened by a low
temperature (against the uniform distribution); nothing else keeps it from collapsing.
The head puts BatchNorm after its hidden layers, as for convolutional backbones.
Settings for ~1,000 images instead of ImageNet: 256 prototypes, a constant teacher
temperature of 0.02 and EMA momentum 0.99 (the library's recipe for USPS uses 1,024,
0.02 and 0.99: with the paper's 0.04 -> 0.07 the centred teacher went uniform).

`online_probe_classes=10` trains a linear classifier on the stop-gradient backbone
features from the labels given to `fit` (the self-supervised loss never sees them) and
logs `online_probe_accuracy`, as lightly and solo-learn do while pretraining. The
multi-crop version (2 global views and local crops) is
`tfcontrast.layers.augmentation.multi_crop_preset`; on USPS's 16x16 digits, with 4 local
crops of 16 px from 30-60% of the view, it scored 0.932 at 10 labels per class against
0.883 for two views, for about 3x the training time (`benchmarks/README.md`).

    python examples/dino_digits.py            # full run
    python examples/dino_digits.py --smoke    # tiny subset, one epoch (tests)
"""

import _digits
import numpy as np

from tfcontrast.layers import ProjectionHead, digits_augmentation
from tfcontrast.models import ContrastiveModel, algorithms


def main(argv=None):
    args = _digits.parse_args(__doc__, argv, epochs=40, batch_size=128)
    data = _digits.load(args)

    model = ContrastiveModel(
        _digits.backbone(args),
        projector=ProjectionHead(hidden_dims=(256, 256), output_dim=64, activation="gelu"),
        algorithm=algorithms.DINO(
            num_prototypes=256,
            teacher_temperature=0.02,
            warmup_teacher_temperature=0.02,
            momentum=0.99,
        ),
        augmentation=digits_augmentation(8, seed=args.seed),
        online_probe_classes=10,
    )
    history = _digits.train(model, data, args, labels=True)  # labels: for the probe only
    result = _digits.evaluate(model, data, "DINO", history)
    # The online probe on clean held-out digits (in the logs it is scored on views).
    x_test, y_test = data[2], data[3]
    logits = model.online_probe(model.backbone.predict(x_test, verbose=0))
    result["online_probe_accuracy"] = float(np.mean(np.argmax(logits, axis=1) == y_test))
    print(f"online linear probe on the test digits: {result['online_probe_accuracy']:.3f}")
    return result


if __name__ == "__main__":
    main()
