"""SwAV (Caron et al., NeurIPS 2020): swapped prediction of online cluster assignments.

"Unsupervised Learning of Visual Features by Contrasting Cluster Assignments",
https://arxiv.org/abs/2006.09882.
"""

from __future__ import annotations

import keras
from keras import ops

from tfcontrast import _checks
from tfcontrast.layers.heads import ProjectionHead
from tfcontrast.models.algorithms.base import Algorithm, check_option, register


@register
class SwAV(Algorithm):
    """SwAV: the code of one view (an equipartitioned assignment of the batch to `K`
    prototypes, by Sinkhorn-Knopp) is predicted from the other views' prototype scores.

    The projection is L2-normalised and scored against `K` normalised prototypes
    (`tfcontrast.layers.Prototypes`, `model.prototypes`); the codes of the first
    `assign_views` views come from `tfcontrast.losses.clustering.sinkhorn_knopp` over
    the global batch (sums all-reduced under `tf.distribute`), and
    `tfcontrast.losses.SwAVLoss` is the cross-entropy of every other view's
    `softmax(scores / t)` with them. The prototypes get no gradient during the first
    `freeze_prototypes_steps` training steps (counted by `model.swav_step`, which only
    training steps advance).

    Extra (local) views follow the assigned ones on axis 1: they are scored and predict
    the codes, but get none of their own. SwAV's queue of past projections (used for
    batches smaller than 256) is not implemented: with small batches the codes come
    from the batch alone.

    Paper defaults (ImageNet, batch 4096): 3000 prototypes, temperature 0.1, epsilon
    0.05, 3 Sinkhorn iterations, prototypes frozen for the first 313 iterations (one
    epoch), projector 2048 -> 128 with BatchNorm.

    Args:
        num_prototypes: `K` (>= 2).
        temperature: softmax temperature of the predictions.
        epsilon: Sinkhorn regularisation.
        sinkhorn_iterations: Sinkhorn rounds.
        freeze_prototypes_steps: training steps with frozen prototypes.
        assign_views: views whose codes are predicted (the first ones on axis 1).
    """

    name = "swav"
    multi_crop = True

    def __init__(
        self,
        num_prototypes: int = 3000,
        temperature: float = 0.1,
        epsilon: float = 0.05,
        sinkhorn_iterations: int = 3,
        freeze_prototypes_steps: int = 313,
        assign_views: int = 2,
    ):
        owner = "SwAV"
        integer = _checks.integer
        check_option(integer, "num_prototypes", num_prototypes, owner, least=2, numpy_ints=False)
        check_option(integer, "sinkhorn_iterations", sinkhorn_iterations, owner, numpy_ints=False)
        check_option(
            integer,
            "freeze_prototypes_steps",
            freeze_prototypes_steps,
            owner,
            least=0,
            numpy_ints=False,
        )
        check_option(integer, "assign_views", assign_views, owner, numpy_ints=False)
        check_option(_checks.positive, "temperature", temperature, owner)
        check_option(_checks.positive, "epsilon", epsilon, owner)
        super().__init__(
            num_prototypes=num_prototypes,
            temperature=temperature,
            epsilon=epsilon,
            sinkhorn_iterations=sinkhorn_iterations,
            freeze_prototypes_steps=freeze_prototypes_steps,
            assign_views=assign_views,
        )
        from tfcontrast.losses.clustering import SwAVLoss

        self.num_prototypes = num_prototypes
        self.freeze_prototypes_steps = freeze_prototypes_steps
        self.loss = SwAVLoss(
            temperature=temperature,
            epsilon=epsilon,
            sinkhorn_iterations=sinkhorn_iterations,
            assign_views=assign_views,
        )

    def default_projector(self):
        return ProjectionHead(hidden_dims=(2048,), output_dim=128)

    def build(self, model, projection_dim):
        from tfcontrast.layers.prototypes import Prototypes

        model.prototypes = Prototypes(self.num_prototypes, name="prototypes")
        model.prototypes.build((None, projection_dim))
        # The model's own counter: JAX's train step cannot read the optimizer's.
        model.swav_step = keras.Variable(0, dtype="int64", trainable=False, name="swav_step")

    def compute_loss(self, model, outputs, labels, training=True):
        frozen = ops.convert_to_tensor(model.swav_step) < self.freeze_prototypes_steps
        scores = model.prototypes(outputs["projection"], freeze=frozen)
        loss = self.loss(None, scores)
        if training:
            model.swav_step.assign(model.swav_step + 1)
        return loss
