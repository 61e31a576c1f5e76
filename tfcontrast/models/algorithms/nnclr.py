"""NNCLR (Dwibedi et al., ICCV 2021): nearest neighbours from a support set as positives.

"With a Little Help from My Friends: Nearest-Neighbor Contrastive Learning of Visual
Representations", https://arxiv.org/abs/2104.14548.
"""

from __future__ import annotations

from keras import ops

from tfcontrast import _checks
from tfcontrast._normalization import l2_normalize
from tfcontrast.layers.heads import PredictionHead, ProjectionHead
from tfcontrast.models.algorithms.base import Algorithm, OptionError, check_option, register


def nearest_neighbours(queries, support, valid=None):
    """The support row nearest (by cosine) to each query, L2-normalised.

    Args:
        queries: `(B, D)`.
        support: `(Q, D)` rows to choose from.
        valid: optional bool `(Q,)`: which support rows may be chosen (a queue's filled
            slots). Where no row is valid, each query is its own neighbour (L2-normalised).

    Returns:
        `(B, D)`: row `i` is `support[argmax_k cos(queries[i], support[k])]`, normalised,
        without gradient (the support set is a memory, as in NNCLR).
    """
    queries = l2_normalize(ops.stop_gradient(ops.convert_to_tensor(queries)))
    support = l2_normalize(ops.stop_gradient(ops.convert_to_tensor(support)))
    similarity = ops.matmul(queries, ops.transpose(support))  # (B, Q)
    if valid is not None:
        valid = ops.convert_to_tensor(valid)
        similarity = ops.where(valid[None, :], similarity, -3.0)  # below any cosine
    neighbours = ops.take(support, ops.argmax(similarity, axis=1), axis=0)
    if valid is None:
        return neighbours
    return ops.where(ops.any(valid), neighbours, queries)


@register
class NNCLR(Algorithm):
    """NNCLR: the positive of a view is the nearest neighbour of the other view's
    projection in a support set of past projections.

    With projections `z1, z2` of two views, predictions `p1, p2` and `NN(z)` the
    support set's nearest row to `z` (cosine), the loss is InfoNCE between `NN(z1)` and
    the predictions of the other view, with the batch's (global) predictions as
    candidates, made symmetric over the two views:

        L_i = -log exp(NN(z1_i) . p2_i / t) / sum_k exp(NN(z1_i) . p2_k / t)
        loss = (L(NN(z1), p2) + L(NN(z2), p1)) / 2

    The support set is a FIFO queue (`tfcontrast.layers.MemoryQueue`, kept on the model
    as `model.support_set`) of the first view's normalised projections, gathered over
    replicas under `tf.distribute`; the batch is enqueued after the loss (the lookup
    sees past batches only). Neighbours carry no gradient. While the queue is empty
    (the first step) each projection is its own neighbour: the loss is then SimCLR's
    one-directional InfoNCE. `evaluate` and validation read the queue and leave it
    unchanged.

    Paper defaults (ImageNet): temperature 0.1, support set of 98,304, projector
    3 layers of 2048 -> 256 with BatchNorm (also on the output), predictor
    4096 -> 256.

    Args:
        temperature: InfoNCE temperature (0.1).
        queue_size: rows of the support set (98304); at least the global batch size.

    Example:

    ```python
    model = ContrastiveModel(backbone, algorithm=NNCLR(queue_size=16384),
                             augmentation="natural")
    model.compile(optimizer="adam")
    model.fit(images, epochs=100, batch_size=256)
    ```
    """

    name = "nnclr"
    uses_predictor = True
    # A support set shorter than the data sets the recipes train on (MoCo's reason,
    # see moco.py: 1,257 digits and 7,291 USPS images): 98,304 rows would hold many
    # stale copies of every image, and an image's nearest neighbour would be its own
    # older projection. Not tuned.
    recipe_defaults = {"options": {"queue_size": 1024}}

    def __init__(self, temperature: float = 0.1, queue_size: int = 98304):
        if isinstance(queue_size, bool) or not isinstance(queue_size, int) or queue_size < 1:
            raise OptionError(
                "queue_size",
                f"NNCLR: `queue_size` must be an int >= the global batch size; received "
                f"{queue_size!r}.",
            )
        check_option(_checks.positive, "temperature", temperature, "NNCLR")
        super().__init__(temperature=temperature, queue_size=queue_size)
        from tfcontrast.losses import InfoNCELoss

        self.temperature = float(temperature)
        self.queue_size = int(queue_size)
        self.loss = InfoNCELoss(temperature=self.temperature)

    def default_projector(self):
        return ProjectionHead(hidden_dims=(2048, 2048), output_dim=256, output_batch_norm=True)

    def default_predictor(self):
        return PredictionHead(hidden_dim=4096, output_dim=256)

    def build(self, model, projection_dim):
        from tfcontrast.layers.queue import MemoryQueue

        # A layer of the model: saved, restored and updated in-graph on every backend.
        model.support_set = MemoryQueue(self.queue_size, projection_dim, name="support_set")

    def _check_batch(self, batch):
        from tfcontrast import distribute

        if batch is None:
            return
        global_batch = int(batch) * distribute.num_replicas()
        if self.queue_size < global_batch:
            raise OptionError(
                "queue_size",
                f"NNCLR: `queue_size` ({self.queue_size}) must be >= the global batch size "
                f"({global_batch}): the support set holds at least one batch.",
            )

    def compute_loss(self, model, outputs, labels, training=True):
        from tfcontrast import distribute

        projection, prediction = outputs["projection"], outputs["prediction"]
        self._check_batch(projection.shape[0])
        support, _, valid = model.support_set.values()
        nn1 = nearest_neighbours(projection[:, 0], support, valid)
        nn2 = nearest_neighbours(projection[:, 1], support, valid)
        loss = 0.5 * (
            self.loss(None, ops.stack([nn1, prediction[:, 1]], axis=1))
            + self.loss(None, ops.stack([nn2, prediction[:, 0]], axis=1))
        )
        if training:
            # The global batch, in replica order, so that every replica's copy of the
            # support set stays the same.
            first = l2_normalize(ops.stop_gradient(projection[:, 0]))
            model.support_set.enqueue(distribute.all_gather(first))
        return loss
