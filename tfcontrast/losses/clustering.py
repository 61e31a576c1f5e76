"""Self-distillation and clustering losses: DINO and SwAV, and the pieces around them.

Both DINO and SwAV predict, from one view, a distribution over `K` prototypes that
another view defines: DINO's teacher distribution (centred, sharpened by a low
temperature), SwAV's code (an equipartitioned assignment). The loss is the same
cross-entropy over the pairs of distinct views ("swapped prediction"),
`_swapped_cross_entropy`; the losses differ in how they make the targets.

What changes between steps (DINO's centre and teacher temperature) is kept by the
caller (`tfcontrast.models.algorithms.DINO`) and passed in; the functions here are
pure, so each one is tested against a NumPy reference.
"""

from __future__ import annotations

import keras
from keras import ops

from tfcontrast import _checks
from tfcontrast.losses.base import ContrastiveLossBase


def _swapped_cross_entropy(targets, logits):
    """`mean_{i, j != i} -sum_k targets[:, i, k] log softmax(logits[:, j])_k`, `(B,)`.

    `targets` `(B, T, K)` are distributions for views `0 .. T-1`; `logits` `(B, V, K)`
    predict them from every other view (`V >= T`, view `i` of the targets is view `i`
    of the logits: a view does not predict itself).
    """
    log_probs = ops.log_softmax(logits, axis=-1)
    terms = [
        -ops.sum(targets[:, i] * log_probs[:, j], axis=-1)
        for i in range(targets.shape[1])
        for j in range(logits.shape[1])
        if j != i
    ]
    return ops.mean(ops.stack(terms, axis=1), axis=1)


def teacher_temperature(step, warmup_steps, start: float = 0.04, end: float = 0.07):
    """DINO's teacher temperature: linear from `start` at step 0 to `end` at
    `warmup_steps`, then constant (`end` throughout when `warmup_steps <= 0`)."""
    step = ops.cast(step, "float32")
    warmup = ops.cast(warmup_steps, "float32")
    progress = ops.where(warmup > 0, ops.minimum(step / ops.maximum(warmup, 1.0), 1.0), 1.0)
    return start + (end - start) * progress


def updated_center(center, teacher_logits, momentum: float = 0.9):
    """DINO's centre update `c <- m c + (1 - m) mean(teacher logits)`.

    The mean runs over every row and view of `teacher_logits` `(B, V, K)` of the global
    batch: under `tf.distribute` the sums and row counts are all-reduced over replicas,
    so each replica computes the same centre as one device on the global batch. Returns
    the new centre `(K,)` (the caller assigns it), without gradient.
    """
    from tfcontrast import distribute

    logits = ops.stop_gradient(ops.cast(teacher_logits, "float32"))
    flat = ops.reshape(logits, (-1, logits.shape[-1]))
    total = distribute.all_reduce_sum(ops.sum(flat, axis=0))
    count = distribute.all_reduce_sum(ops.cast(ops.shape(flat)[0], "float32"))
    return momentum * ops.cast(center, "float32") + (1.0 - momentum) * total / count


def teacher_probabilities(teacher_logits, center, temperature):
    """`softmax((t - c) / temperature)`: the centred, sharpened teacher targets."""
    logits = ops.stop_gradient(ops.cast(teacher_logits, "float32"))
    return ops.softmax((logits - ops.cast(center, "float32")) / temperature, axis=-1)


@keras.saving.register_keras_serializable(package="tfcontrast")
class DINOLoss(ContrastiveLossBase):
    """DINO's cross-entropy between teacher and student distributions of other views.

    Caron et al., "Emerging Properties in Self-Supervised Vision Transformers", ICCV
    2021 (https://arxiv.org/abs/2104.14294). With teacher targets `P_t(x_i)` for the
    `T` global views and student logits `g_s(x_j)` for all `V` views:

        L = mean_{i < T, j != i} -sum_k P_t(x_i)_k log softmax(g_s(x_j) / t_s)_k

    `y_pred` is `(B, T + V, K)`: the first `T` entries on axis 1 are the teacher's
    probabilities (e.g. `teacher_probabilities(logits, center, t_t)`: centred and
    sharpened, no gradient), the last `V` the student's logits (prototype scores) for
    every view, the `T` teacher views first. Labels are ignored (`y_true` may be
    `None`).

    Args:
        student_temperature: `t_s` (0.1).
        teacher_views: `T`, the views the teacher sees (2 global views).

    Example:

    ```python
    targets = teacher_probabilities(teacher_logits, center, temperature=0.04)
    loss = DINOLoss()(None, keras.ops.concatenate([targets, student_logits], axis=1))
    ```
    """

    labels = "ignored"
    embedding_ranks = (3,)

    def __init__(
        self,
        student_temperature: float = 0.1,
        teacher_views: int = 2,
        name="dino_loss",
        **kwargs,
    ):
        super().__init__(name=name, **kwargs)
        self.student_temperature = _checks.positive(
            "student_temperature", student_temperature, type(self).__name__
        )
        self.teacher_views = _checks.integer(
            "teacher_views", teacher_views, type(self).__name__, numpy_ints=False
        )

    def call(self, y_true, y_pred):
        t = self.teacher_views
        views = y_pred.shape[1]
        if views is not None and views < 2 * t:
            raise ValueError(
                f"DINOLoss: `y_pred` must hold the {t} teacher views then at least {t} "
                f"student views on axis 1; received shape {tuple(y_pred.shape)}."
            )
        targets, logits = y_pred[:, :t], y_pred[:, t:]
        return _swapped_cross_entropy(ops.stop_gradient(targets), logits / self.student_temperature)

    def get_config(self):
        return {
            **super().get_config(),
            "student_temperature": self.student_temperature,
            "teacher_views": self.teacher_views,
        }


def sinkhorn_knopp(scores, epsilon: float = 0.05, iterations: int = 3):
    """SwAV's codes: an equipartitioned soft assignment of the batch to `K` prototypes.

    `Q = exp(scores / epsilon)` `(B, K)` is scaled alternately so that every prototype
    gets `1 / K` of the mass and every example `1 / B` (`iterations` rounds of the
    Sinkhorn-Knopp algorithm), then each row is rescaled to sum to 1. Under
    `tf.distribute` the sums over the batch and the batch size are all-reduced over
    replicas, so each replica gets its rows of the global batch's assignment (SwAV's
    `distributed_sinkhorn`). No gradient flows through the codes.

    Args:
        scores: `(B, K)` prototype scores (cosines, e.g. from
            `tfcontrast.layers.Prototypes`).
        epsilon: entropic regularisation (0.05).
        iterations: Sinkhorn rounds (3).

    Returns:
        `(B, K)` codes, each row a distribution.
    """
    from tfcontrast import distribute

    scores = ops.stop_gradient(ops.cast(scores, "float32"))
    k = scores.shape[-1]
    # A constant shift (the global maximum) leaves the normalised result unchanged and
    # keeps the exponentials finite. Cosines span 2, so with epsilon >= 0.025 no entry
    # underflows; scores spread wider than ~87 epsilon can give an example a zero code
    # (never NaN: the divisions are floored).
    shift = ops.max(distribute.all_gather(ops.reshape(ops.max(scores), (1,))))
    q = ops.exp((scores - shift) / epsilon)
    batch = distribute.all_reduce_sum(ops.cast(ops.shape(q)[0], "float32"))
    tiny = 1e-30
    q = q / ops.maximum(distribute.all_reduce_sum(ops.sum(q)), tiny)
    for _ in range(iterations):
        per_prototype = distribute.all_reduce_sum(ops.sum(q, axis=0, keepdims=True))
        q = q / ops.maximum(per_prototype, tiny) / k
        q = q / ops.maximum(ops.sum(q, axis=1, keepdims=True), tiny) / batch
    return ops.stop_gradient(q * batch)


@keras.saving.register_keras_serializable(package="tfcontrast")
class SwAVLoss(ContrastiveLossBase):
    """SwAV's swapped prediction: each view predicts the code of another view.

    Caron et al., "Unsupervised Learning of Visual Features by Contrasting Cluster
    Assignments", NeurIPS 2020 (https://arxiv.org/abs/2006.09882). With prototype
    scores `s_v` (cosines of the normalised projection of view `v` with the normalised
    prototypes) and codes `q_i = sinkhorn_knopp(s_i)` of the first `assign_views` views:

        L = mean over i < assign_views, j != i of -sum_k q_ik log softmax(s_j / t)_k

    `y_pred` is `(B, V, K)`, the scores of every view (the assigned views first); labels
    are ignored (`y_true` may be `None`). The codes carry no gradient.

    Args:
        temperature: `t` (0.1).
        epsilon: Sinkhorn regularisation (0.05).
        sinkhorn_iterations: Sinkhorn rounds (3).
        assign_views: views whose codes are predicted (the 2 global views).

    Example:

    ```python
    scores = keras.ops.stack([prototypes(z1), prototypes(z2)], axis=1)   # (B, 2, K)
    loss = tfcontrast.losses.SwAVLoss()(None, scores)
    ```
    """

    labels = "ignored"
    embedding_ranks = (3,)

    def __init__(
        self,
        temperature: float = 0.1,
        epsilon: float = 0.05,
        sinkhorn_iterations: int = 3,
        assign_views: int = 2,
        name="swav_loss",
        **kwargs,
    ):
        super().__init__(name=name, **kwargs)
        owner = type(self).__name__
        self.temperature = _checks.positive("temperature", temperature, owner)
        self.epsilon = _checks.positive("epsilon", epsilon, owner)
        self.sinkhorn_iterations = _checks.integer(
            "sinkhorn_iterations", sinkhorn_iterations, owner, numpy_ints=False
        )
        self.assign_views = _checks.integer("assign_views", assign_views, owner, numpy_ints=False)

    def call(self, y_true, y_pred):
        a = self.assign_views
        if y_pred.shape[1] is not None and y_pred.shape[1] < max(a, 2):
            raise ValueError(
                f"SwAVLoss: `y_pred` must hold at least {max(a, 2)} views on axis 1 "
                f"(assign_views={a}); received shape {tuple(y_pred.shape)}."
            )
        codes = ops.stack(
            [
                sinkhorn_knopp(y_pred[:, i], self.epsilon, self.sinkhorn_iterations)
                for i in range(a)
            ],
            axis=1,
        )
        return _swapped_cross_entropy(codes, y_pred / self.temperature)

    def get_config(self):
        return {
            **super().get_config(),
            "temperature": self.temperature,
            "epsilon": self.epsilon,
            "sinkhorn_iterations": self.sinkhorn_iterations,
            "assign_views": self.assign_views,
        }
