import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

BACKEND = keras.backend.backend()


def pytest_collection_modifyitems(config, items):
    """Skips tests marked `tf_only` when Keras runs on another backend (JAX, PyTorch)."""
    if BACKEND == "tensorflow":
        return
    for item in items:
        marker = item.get_closest_marker("tf_only")
        if marker is None and "distribute" in item.path.parts:
            marker = pytest.mark.tf_only(reason="tf.distribute strategies and collectives").mark
        if marker is not None:
            why = marker.kwargs.get("reason") or (marker.args[0] if marker.args else "")
            reason = f"TensorFlow-only, skipped on KERAS_BACKEND={BACKEND}: {why or 'tf APIs'}"
            item.add_marker(pytest.mark.skip(reason=reason))


@pytest.fixture
def rng():
    return np.random.default_rng(0)


@pytest.fixture(autouse=True)
def _reset_policy():
    yield
    keras.mixed_precision.set_global_policy("float32")
