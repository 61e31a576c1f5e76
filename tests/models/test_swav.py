"""SwAV through ContrastiveModel: prototype freezing, the step counter, arguments."""

import keras
import numpy as np
import pytest

from tests.models.test_contrastive_model import digits, make_model  # noqa: F401
from tfcontrast.models import algorithms


def numpy_of(x):
    return np.asarray(keras.ops.convert_to_numpy(x))


def test_prototypes_are_frozen_for_the_first_steps(digits):  # noqa: F811
    x, _ = digits
    model = make_model(algorithms.SwAV(num_prototypes=8, freeze_prototypes_steps=2))
    model.compile(optimizer=keras.optimizers.SGD(0.5))
    model.build((None, 8, 8, 1))
    start = numpy_of(model.prototypes.kernel)
    backbone = numpy_of(model.backbone.weights[0])
    model.fit(x[:32], batch_size=16, epochs=1, verbose=0)  # steps 0 and 1: frozen
    np.testing.assert_array_equal(numpy_of(model.prototypes.kernel), start)
    assert np.abs(numpy_of(model.backbone.weights[0]) - backbone).max() > 0
    assert int(numpy_of(model.swav_step)) == 2
    model.evaluate(np.stack([x[:16], x[16:32]], axis=1), batch_size=16, verbose=0)
    assert int(numpy_of(model.swav_step)) == 2  # evaluation counts no step
    model.fit(x[:16], batch_size=16, epochs=1, verbose=0)  # step 2: trained
    assert np.abs(numpy_of(model.prototypes.kernel) - start).max() > 0


@pytest.mark.parametrize(
    "option, value",
    [
        ("num_prototypes", 1),
        ("num_prototypes", 2.0),
        ("temperature", 0.0),
        ("epsilon", -0.5),
        ("sinkhorn_iterations", 0),
        ("freeze_prototypes_steps", -1),
        ("assign_views", 0),
    ],
)
def test_bad_options_name_themselves(option, value):
    with pytest.raises(ValueError, match=f"`{option}`") as error:
        algorithms.SwAV(**{option: value})
    assert error.value.option == option
