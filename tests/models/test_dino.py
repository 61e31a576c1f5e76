"""DINO through ContrastiveModel: teacher prototypes follow the EMA target, the centre
and teacher temperature follow their references, arguments are checked."""

import keras
import numpy as np
import pytest

from tests.models.test_contrastive_model import digits, make_model  # noqa: F401
from tfcontrast.models import algorithms


def numpy_of(x):
    return np.asarray(keras.ops.convert_to_numpy(x))


def test_teacher_prototypes_and_centre_follow_the_student(digits):  # noqa: F811
    x, _ = digits
    algo = algorithms.DINO(num_prototypes=16, momentum=0.9, final_momentum=0.9)
    model = make_model(algo)
    model.compile(optimizer=keras.optimizers.SGD(0.1))
    model.build((None, 8, 8, 1))
    student0 = numpy_of(model.prototypes.kernel)
    model.fit(x[:16], batch_size=16, epochs=1, verbose=0)  # one step
    # First step: the teacher becomes a copy of the student (then an EMA step on the
    # weights from before the gradient update, as for every target: a no-op here).
    np.testing.assert_allclose(numpy_of(model.target_prototypes.kernel), student0, rtol=1e-6)
    student1 = numpy_of(model.prototypes.kernel)
    assert np.abs(student1 - student0).max() > 0  # the student's prototypes trained
    model.fit(x[:16], batch_size=16, epochs=1, verbose=0)
    teacher2 = numpy_of(model.target_prototypes.kernel)
    np.testing.assert_allclose(teacher2, 0.9 * student0 + 0.1 * student1, rtol=1e-5, atol=1e-6)
    center = numpy_of(model.center)
    assert np.abs(center).max() > 0 and center.shape == (16,)
    assert model.prototypes.kernel.trainable and not model.target_prototypes.kernel.trainable


def test_teacher_temperature_warms_up_over_the_fraction_of_training(digits):  # noqa: F811
    algo = algorithms.DINO(num_prototypes=4, teacher_warmup=0.5)
    model = make_model(algo)
    model.build((None, 8, 8, 1))
    model.total_steps.assign(20)
    for step, expected in [(0, 0.04), (5, 0.055), (10, 0.07), (15, 0.07)]:
        model.momentum_step.assign(step)
        got = float(numpy_of(algo.current_teacher_temperature(model)))
        assert got == pytest.approx(expected, abs=1e-7)


@pytest.mark.parametrize(
    "option, value",
    [
        ("num_prototypes", 1),
        ("num_prototypes", 0),
        ("student_temperature", 0.0),
        ("teacher_temperature", -1.0),
        ("teacher_warmup", 1.5),
        ("center_momentum", -0.1),
        ("teacher_views", 0),
    ],
)
def test_bad_options_name_themselves(option, value):
    with pytest.raises(ValueError, match=f"`{option}`") as error:
        algorithms.DINO(**{option: value})
    assert error.value.option == option


def test_recipe_head_has_batch_norm_and_a_constant_sharp_teacher():
    # The recipe's head keeps DINO's shape with BatchNorm after the hidden layers (on
    # the USPS validation split the BatchNorm-free head collapsed to a uniform teacher)
    # and the teacher temperature does not rise.
    from tfcontrast.models import recipes

    recipe = recipes.Recipe.for_algorithm("dino")
    model, _ = recipes.build_model(recipe, (16, 16, 1))
    head = model.projector
    assert head.batch_norm and not head.output_batch_norm
    assert head.hidden_dims == (recipe.hidden_dim, recipe.hidden_dim)
    options = model.algorithm.loss_kwargs
    assert options["teacher_temperature"] == options["warmup_teacher_temperature"] == 0.02
    assert model.algorithm.num_prototypes == 1024
