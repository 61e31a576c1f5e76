"""MoCo v2 (Chen et al., 2020) and MoCo v3 (Chen, Xie & He, ICCV 2021).

Both keep a momentum (EMA) copy of the backbone and projector that encodes the keys.
MoCo v2 contrasts each query with its key and a queue of past keys; MoCo v3 drops the
queue, adds a predictor, and contrasts against the other keys of the batch.
"""

from __future__ import annotations

from keras import ops

from tfcontrast.layers.heads import PredictionHead, ProjectionHead
from tfcontrast.models.algorithms.base import Algorithm, register


@register
class MoCoV2(Algorithm):
    """MoCo v2: momentum key encoder (0.999) and a queue of 65536 negative keys.

    The query is the online projection of view 1, the key the target projection of
    view 2; after the loss the keys are enqueued. Projector: 2048 -> 128, no BatchNorm.

    Args:
        temperature: InfoNCE temperature (0.2).
        queue_size: number of negative keys kept (65536).
        momentum: EMA momentum of the key encoder (0.999, constant).
    """

    name = "moco_v2"
    # Small data, short runs: a queue shorter than the data set (4096 would hold several
    # stale copies of every digit of a 1,257-image set as negatives) and a faster EMA,
    # since 0.999 barely moves the keys in a few thousand steps (chosen on the digits by
    # benchmarks/bench_ssl_digits.py, before the recipes: see commit 258a2ea).
    # Temperature 0.5, as SimCLR's recipe (where 0.5 beat 0.2 by 1.5-4 points): on USPS's
    # validation split (50 epochs) it gave 0.893 at 10 labels per class; the paper's 0.2
    # gave 0.875, but that run also had a BatchNorm projector, so the two differ in both.
    recipe_defaults = {"options": {"temperature": 0.5, "queue_size": 1024, "momentum": 0.99}}

    def __init__(self, temperature: float = 0.2, queue_size: int = 65536, momentum: float = 0.999):
        super().__init__(temperature=temperature, queue_size=queue_size, momentum=momentum)
        self.temperature = float(temperature)
        self.queue_size = int(queue_size)
        self.momentum_base = self.momentum_final = float(momentum)

    def default_projector(self):
        return ProjectionHead(hidden_dims=(2048,), output_dim=128, batch_norm=False)

    def build(self, model, projection_dim):
        from tfcontrast.layers.queue import MemoryQueue
        from tfcontrast.losses import InfoNCELoss

        # The queue is a layer of the model: saved, restored and updated in-graph.
        model.queue = MemoryQueue(self.queue_size, projection_dim, name="key_queue")
        self.loss = InfoNCELoss(temperature=self.temperature, queue=model.queue)
        # Evaluation reads the queue without enqueuing its keys.
        self.eval_loss = InfoNCELoss(
            temperature=self.temperature, queue=model.queue, update_queue=False
        )

    def compute_loss(self, model, outputs, labels, training=True):
        query = outputs["projection"][:, 0]
        key = model.target_outputs(outputs["views"][:, 1:2], training=training)[:, 0]
        loss = (self.loss if training else self.eval_loss)(None, ops.stack([query, key], axis=1))
        if training:
            model.update_target()
        return loss


@register
class MoCoV3(Algorithm):
    """MoCo v3: momentum encoder, predictor, in-batch keys, symmetric loss.

    `loss = 2 tau [ctr(q1, k2) + ctr(q2, k1)] / 2` with InfoNCE `ctr` over the batch's
    keys. The momentum rises from 0.99 to 1 on a cosine schedule. Heads: 3-layer
    projector 4096 -> 256 (BN on the output), predictor 4096 -> 256.

    Args:
        temperature: InfoNCE temperature (0.2).
        momentum: initial EMA momentum (0.99).
    """

    name = "moco_v3"
    uses_predictor = True

    def __init__(
        self, temperature: float = 0.2, momentum: float = 0.99, final_momentum: float = 1.0
    ):
        super().__init__(temperature=temperature, momentum=momentum, final_momentum=final_momentum)
        from tfcontrast.losses import InfoNCELoss

        self.temperature = float(temperature)
        self.momentum_base = float(momentum)
        self.momentum_final = float(final_momentum)
        self.loss = InfoNCELoss(temperature=temperature)

    def default_projector(self):
        return ProjectionHead(hidden_dims=(4096, 4096), output_dim=256, output_batch_norm=True)

    def default_predictor(self):
        return PredictionHead(hidden_dim=4096, output_dim=256)

    def compute_loss(self, model, outputs, labels, training=True):
        queries = outputs["prediction"]
        keys = model.target_outputs(outputs["views"], training=training)
        loss = 0.5 * (
            self.loss(None, ops.stack([queries[:, 0], keys[:, 1]], axis=1))
            + self.loss(None, ops.stack([queries[:, 1], keys[:, 0]], axis=1))
        )
        if training:
            model.update_target()
        return 2.0 * self.temperature * loss
