"""DINO (Caron et al., ICCV 2021): self-distillation with no labels.

"Emerging Properties in Self-Supervised Vision Transformers",
https://arxiv.org/abs/2104.14294.
"""

from __future__ import annotations

import keras
from keras import ops

from tfcontrast import _checks
from tfcontrast.layers.heads import ProjectionHead
from tfcontrast.models.algorithms.base import Algorithm, check_option, register


@register
class DINO(Algorithm):
    """DINO: a student matches a momentum teacher's centred, sharpened distribution
    over `K` prototypes, from the other view.

    The head is the projector (an MLP ending in a bottleneck, `model.projector`)
    followed by `K` weight-normalised prototypes on the L2-normalised bottleneck
    (`tfcontrast.layers.Prototypes`, `model.prototypes`). The teacher is the model's
    momentum target network (`model.target_outputs`) with its own EMA copy of the
    prototypes (`model.target_prototypes`, moved by `model.update_target` with the rest
    of the target). With teacher logits `g_t`, student logits `g_s` and centre `c`:

        P_t(x) = softmax((g_t(x) - c) / t_t),   P_s(x) = softmax(g_s(x) / t_s)
        loss = mean over teacher views i and student views j != i of H(P_t(x_i), P_s(x_j))
        c <- m c + (1 - m) mean of g_t over the global batch and teacher views

    The teacher sees the first `teacher_views` (2 global) views, the student every
    view, so extra local views can follow the global ones on axis 1. The teacher
    temperature rises linearly from `warmup_teacher_temperature` to
    `teacher_temperature` over the first `teacher_warmup` fraction of training
    (`model.total_steps`, set by `fit`; with an unknown length it starts at
    `teacher_temperature`). The centre (`model.center`, all-replica mean under
    `tf.distribute`), the target and the step counter change only in training steps.

    Paper defaults (ViT-S/16, 300 epochs): `K = 65536`; head MLP 2048 -> 2048 -> 256
    with GELU and no BatchNorm; student temperature 0.1; teacher temperature 0.04
    rising to 0.07 over the first 30 epochs (`teacher_warmup=0.1` of 300); centre
    momentum 0.9; teacher momentum 0.996 rising to 1 on a cosine. The head here keeps
    the paper's shape but puts BatchNorm after its hidden layers, as for convolutional
    backbones (lightly's ResNet DINO heads, `batch_norm=True`): the backbones of this
    library are CNNs. Without BatchNorm, on USPS, the centred teacher became uniform
    within two epochs (loss stuck at `log K`; with the prototypes frozen, the student
    gave every image the same distribution) and the backbone learned little; with it the
    teacher kept distinct, peaked distributions per image (see `recipe_defaults`).

    When the loss sits at `log K` (a uniform teacher: centring wins), sharpen more with
    a lower teacher temperature; when every image gets the same prototype, centre more.

    Args:
        num_prototypes: `K` (>= 2).
        student_temperature: `t_s`.
        teacher_temperature: `t_t` after the warm-up.
        warmup_teacher_temperature: `t_t` at the first step.
        teacher_warmup: fraction of training (in `[0, 1]`) the warm-up lasts.
        center_momentum: `m` of the centre.
        momentum, final_momentum: the teacher's EMA momentum, start and end.
        teacher_views: views the teacher sees (the first ones on axis 1).
    """

    name = "dino"
    multi_crop = True
    # Runs of a few thousand steps on a few thousand images, not DINO's ~10^5 steps on
    # ImageNet: BYOL's faster EMA start (0.99); 1,024 prototypes (fewer for fewer
    # images: about one per 6 training images of USPS, where 65,536 serve 1.28M
    # images); and a sharper, constant teacher (t_t = 0.02, the DINO authors' advice
    # for a teacher that goes uniform, facebookresearch/dino issue #43). On the USPS
    # validation split (50 epochs; pixels 0.821 at 10 labels per class) the old
    # defaults (4,096 prototypes, t_t 0.04 -> 0.07, head without BatchNorm) scored
    # 0.724: the teacher's entropy reached log K within two epochs. With the BatchNorm
    # head, 1,024 prototypes and t_t = 0.04 (constant): 0.842, the teacher's entropy
    # rising towards log K over the first epochs; with t_t = 0.02: 0.917 (1-NN 0.973,
    # linear probe 0.979). (results/quality_val_50_epochs_dino_*.json) On the test split
    # this recipe gives 0.883 (pixels 0.806; results/quality_usps_round4_dino.json).
    # Multi-crop (4 local crops, same split and epochs) did not beat two views: crops of
    # 10x10 or 12x12 px 0.881 / 0.890; crops of 30-60% of the view resized to 16x16 px
    # 0.922, level with 0.917 for 3 times the images per step.
    recipe_defaults = {
        "options": {
            "num_prototypes": 1024,
            "teacher_temperature": 0.02,
            "warmup_teacher_temperature": 0.02,
            "momentum": 0.99,
        }
    }

    def __init__(
        self,
        num_prototypes: int = 65536,
        student_temperature: float = 0.1,
        teacher_temperature: float = 0.07,
        warmup_teacher_temperature: float = 0.04,
        teacher_warmup: float = 0.1,
        center_momentum: float = 0.9,
        momentum: float = 0.996,
        final_momentum: float = 1.0,
        teacher_views: int = 2,
    ):
        owner = "DINO"
        integer = _checks.integer
        check_option(integer, "num_prototypes", num_prototypes, owner, least=2, numpy_ints=False)
        check_option(integer, "teacher_views", teacher_views, owner, numpy_ints=False)
        for name, value in (
            ("student_temperature", student_temperature),
            ("teacher_temperature", teacher_temperature),
            ("warmup_teacher_temperature", warmup_teacher_temperature),
        ):
            check_option(_checks.positive, name, value, owner)
        for name, value in (
            ("teacher_warmup", teacher_warmup),
            ("center_momentum", center_momentum),
            ("momentum", momentum),
            ("final_momentum", final_momentum),
        ):
            check_option(_checks.in_range, name, value, owner, 0.0, 1.0)
        super().__init__(
            num_prototypes=num_prototypes,
            student_temperature=student_temperature,
            teacher_temperature=teacher_temperature,
            warmup_teacher_temperature=warmup_teacher_temperature,
            teacher_warmup=teacher_warmup,
            center_momentum=center_momentum,
            momentum=momentum,
            final_momentum=final_momentum,
            teacher_views=teacher_views,
        )
        from tfcontrast.losses.clustering import DINOLoss

        self.num_prototypes = num_prototypes
        self.teacher_views = teacher_views
        self.momentum_base = float(momentum)
        self.momentum_final = float(final_momentum)
        self.loss = DINOLoss(student_temperature=student_temperature, teacher_views=teacher_views)

    def default_projector(self):
        return ProjectionHead(
            hidden_dims=(2048, 2048), output_dim=256, batch_norm=True, activation="gelu"
        )

    def build(self, model, projection_dim):
        from tfcontrast.layers.prototypes import Prototypes

        model.prototypes = Prototypes(self.num_prototypes, name="prototypes")
        model.target_prototypes = Prototypes(self.num_prototypes, name="target_prototypes")
        for layer in (model.prototypes, model.target_prototypes):
            layer.build((None, projection_dim))
        model.target_prototypes.kernel.trainable = False
        model.center = keras.Variable(
            ops.zeros((self.num_prototypes,)), trainable=False, name="center"
        )

    def target_pairs(self, model):
        """Teacher and student prototypes: copied and moved with the target network."""
        return [(model.target_prototypes.kernel, model.prototypes.kernel)]

    def current_teacher_temperature(self, model):
        from tfcontrast.losses.clustering import teacher_temperature

        options = self.loss_kwargs
        warmup = ops.cast(model.total_steps, "float32") * options["teacher_warmup"]
        return teacher_temperature(
            model.momentum_step,
            ops.floor(warmup),
            options["warmup_teacher_temperature"],
            options["teacher_temperature"],
        )

    def compute_loss(self, model, outputs, labels, training=True):
        from tfcontrast.losses.clustering import teacher_probabilities, updated_center

        t = self.teacher_views
        views = outputs["views"]
        if views.shape[1] is not None and views.shape[1] < max(t, 2):
            raise ValueError(
                f"DINO: the teacher sees the first {t} views (`teacher_views`); received "
                f"{views.shape[1]} views."
            )
        teacher = model.target_prototypes(model.target_outputs(views[:, :t], training=training))
        teacher = ops.stop_gradient(teacher)
        student = model.prototypes(outputs["projection"])
        # The schedule is read at this step, before `update_target` counts it.
        temperature = self.current_teacher_temperature(model)
        targets = teacher_probabilities(teacher, model.center, temperature)
        loss = self.loss(None, ops.concatenate([targets, ops.cast(student, "float32")], axis=1))
        if training:
            model.center.assign(
                updated_center(model.center, teacher, self.loss_kwargs["center_momentum"])
            )
            model.update_target()
        return loss
