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

from tfcontrast.losses.base import ContrastiveLossBase, check_positive


def check_count(name: str, value, owner: str, least: int = 1) -> int:
    """Raises a ValueError naming `name` unless `value` is an int `>= least`."""
    if isinstance(value, bool) or not isinstance(value, int) or value < least:
        raise ValueError(f"{owner}: `{name}` must be an int >= {least}; received {name}={value!r}.")
    return value


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
        self.student_temperature = check_positive(
            "student_temperature", student_temperature, type(self).__name__
        )
        self.teacher_views = check_count("teacher_views", teacher_views, type(self).__name__)

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
