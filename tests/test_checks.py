"""`tfcontrast._checks`: which values each argument check accepts, what it returns, and
its one message style ("Owner: `name` must be ...; received name=...")."""

import math

import numpy as np
import pytest

from tfcontrast import _checks


def _message(check, *args, **kwargs) -> str:
    with pytest.raises(ValueError) as info:
        check(*args, **kwargs)
    return str(info.value)


# -- integer --------------------------------------------------------------------------
def test_integer_accepts_python_and_numpy_ints_and_returns_int():
    for value, expected in ((1, 1), (7, 7), (np.int64(3), 3), (np.uint8(2), 2)):
        out = _checks.integer("k", value, "Owner")
        assert out == expected and type(out) is int
    assert _checks.integer("steps", 0, "Owner", least=0) == 0
    assert _checks.integer("prototypes", 2, "Owner", least=2) == 2


@pytest.mark.parametrize(
    "value", [0, -3, True, False, np.bool_(True), 2.0, 2.5, "3", None, [3], np.float64(3.0)]
)
def test_integer_refuses(value):
    message = _message(_checks.integer, "k", value, "Owner")
    assert message == f"Owner: `k` must be an int >= 1; received k={value!r}."


def test_integer_least_is_in_the_message():
    assert "must be an int >= 2; received num_prototypes=1." in _message(
        _checks.integer, "num_prototypes", 1, "Prototypes", least=2
    )
    assert "received steps=-1" in _message(_checks.integer, "steps", -1, "SwAV", least=0)


def test_integer_numpy_ints_switch():
    with pytest.raises(
        ValueError, match=r"Owner: `k` must be an int >= 1; received k=np.int64\(3\)"
    ):
        _checks.integer("k", np.int64(3), "Owner", numpy_ints=False)
    assert _checks.integer("k", 3, "Owner", numpy_ints=False) == 3


def test_integer_whole_floats_switch():
    for value in (16.0, np.float32(4.0), np.int64(5), 8):
        out = _checks.integer("memory_size", value, "XBM", whole_floats=True)
        assert out == int(value) and type(out) is int
    for value in (2.5, 0.0, -4.0, math.inf, math.nan, True, "8"):
        with pytest.raises(ValueError, match="XBM: `memory_size` must be an int >= 1"):
            _checks.integer("memory_size", value, "XBM", whole_floats=True)


# -- positive / non_negative ----------------------------------------------------------
def test_positive():
    for value in (2, 0.5, np.float32(1e-3), "2", True):
        out = _checks.positive("margin", value, "Owner")
        assert out == float(value) and type(out) is float
    for bad in (0, -1.0, None, math.nan, "abc", [1.0], -math.inf):
        message = _message(_checks.positive, "margin", bad, "Owner")
        assert message == f"Owner: `margin` must be > 0; received margin={bad!r}."


def test_non_negative():
    for value in (0, 0.0, 3, math.inf):
        assert _checks.non_negative("epsilon", value, "Owner") == float(value)
    for bad in (-1e-3, None, math.nan, "x"):
        message = _message(_checks.non_negative, "epsilon", bad, "Owner")
        assert message == f"Owner: `epsilon` must be >= 0; received epsilon={bad!r}."


# -- in_range -------------------------------------------------------------------------
def test_in_range_closed_and_open():
    assert _checks.in_range("p", 0, "Owner", 0.0, 1.0) == 0.0
    assert _checks.in_range("p", 1, "Owner", 0.0, 1.0) == 1.0
    assert _checks.in_range("m", 0.99, "Owner", 0.0, 1.0, high_open=True) == 0.99
    for bad in (-0.1, 1.5, None, math.nan, "x"):
        message = _message(_checks.in_range, "p", bad, "Owner", 0.0, 1.0)
        assert message == f"Owner: `p` must be in [0, 1]; received p={bad!r}."
    message = _message(_checks.in_range, "m", 1.0, "Owner", 0.0, 1.0, high_open=True)
    assert message == "Owner: `m` must be in [0, 1); received m=1.0."


def test_in_range_hint_and_bounds_format():
    message = _message(
        _checks.in_range,
        "margin",
        28.6,
        "ArcFaceLoss",
        0.0,
        math.pi / 2,
        high_open=True,
        hint=" Pass radians.",
    )
    assert message == (
        "ArcFaceLoss: `margin` must be in [0, 1.5708); received margin=28.6. Pass radians."
    )


# -- pairs ----------------------------------------------------------------------------
def test_ordered_pair():
    assert _checks.ordered_pair("scale", (0.2, 1), "Crop", 0.0, 1.0) == (0.2, 1.0)
    assert _checks.ordered_pair("ratio", [3, 3], "Crop") == (3.0, 3.0)
    assert _checks.ordered_pair("ratio", iter([1, 2]), "Crop") == (1.0, 2.0)  # read once
    assert _message(_checks.ordered_pair, "scale", 0.5, "Crop") == (
        "Crop: `scale` must be a pair (min, max); received scale=0.5."
    )
    assert _message(_checks.ordered_pair, "scale", (0.8, 0.2), "Crop", 0.0, 1.0) == (
        "Crop: `scale` must be a pair (min, max) with 0.0 <= min <= max <= 1.0; "
        "received scale=(0.8, 0.2)."
    )
    with pytest.raises(ValueError, match="with 0.0 <= min <= max <= inf"):
        _checks.ordered_pair("ratio", (-1, 2), "Crop")
    # A string is not a pair ("11" is not (1, 1)), nor a boolean a number.
    for bad in ["11", b"11", (True, 1)]:
        assert _message(_checks.ordered_pair, "scale", bad, "Crop") == (
            f"Crop: `scale` must be a pair (min, max); received scale={bad!r}."
        )


def test_fraction_range():
    assert _checks.fraction_range("local_scale", ("0.3", 0.6), "Recipe") == (0.3, 0.6)
    assert _checks.fraction_range("local_scale", (1, 1), "Recipe") == (1.0, 1.0)
    for bad in [(0.0, 0.4), (0.6, 0.3), (0.5, 1.2), ("a", "b"), 0.5, "11", (True, True)]:
        assert _message(_checks.fraction_range, "local_scale", bad, "Recipe") == (
            "Recipe: `local_scale` must be two fractions 0 < min <= max <= 1; "
            f"received local_scale={bad!r}."
        )


def test_size_pair():
    assert _checks.size_pair("image_size", 32, "Aug") == (32, 32)
    assert _checks.size_pair("image_size", (24, "16"), "Aug") == (24, 16)
    assert _message(_checks.size_pair, "image_size", "big", "Aug") == (
        "Aug: `image_size` must be an int or a pair (height, width); received image_size='big'."
    )
    assert _message(_checks.size_pair, "image_size", (0, 8), "Aug") == (
        "Aug: `image_size` must be positive; received image_size=(0, 8)."
    )
    # "16" is not (1, 6), True is not 1.
    for bad in ["16", True, (True, 8)]:
        assert _message(_checks.size_pair, "image_size", bad, "Aug") == (
            "Aug: `image_size` must be an int or a pair (height, width); "
            f"received image_size={bad!r}."
        )


# -- choice ---------------------------------------------------------------------------
def test_choice():
    assert _checks.choice("mode", "a", ("a", "b"), "Owner") == "a"
    assert _checks.choice("metric", "l2", {"cosine": 0, "l2": 1}, "Owner") == "l2"
    # Listed sorted, whatever the order (or type) of `choices`.
    assert _message(_checks.choice, "mode", "c", ("b", "a"), "Owner") == (
        "Owner: `mode` must be one of ['a', 'b']; received mode='c'."
    )
    assert "one of ['a', 'b']" in _message(_checks.choice, "mode", None, {"b", "a"}, "Owner")


# -- call sites keep their accepted values ----------------------------------------------
def test_call_sites_keep_their_integer_kinds():
    """The kinds each former local checker accepted (numpy ints, whole floats)."""
    from tfcontrast.evaluation.knn import knn_accuracy
    from tfcontrast.layers import MemoryQueue
    from tfcontrast.losses import ContrastiveLoss, CrossBatchMemory

    x = np.eye(4, dtype="float32")
    y = np.arange(4)
    knn_accuracy(x, y, x, y, k=np.int64(1))  # evaluation: numpy ints accepted
    assert CrossBatchMemory(ContrastiveLoss(), memory_size=8.0).memory_size == 8  # whole floats
    with pytest.raises(ValueError, match="MemoryQueue: `size` must be an int >= 1"):
        MemoryQueue(np.int64(4))  # layers: Python ints only


def test_did_you_mean_offers_the_closest_name_or_nothing():
    from tfcontrast import _checks

    names = ["simclr", "simsiam", "vicreg", "EfficientNetV2B0"]
    assert _checks.did_you_mean("simclar", names) == " Did you mean 'simclr'?"
    assert _checks.did_you_mean("VICREG", names) == " Did you mean 'vicreg'?"
    assert _checks.did_you_mean("efficientnetv2b1", names) == " Did you mean 'EfficientNetV2B0'?"
    assert _checks.did_you_mean("quadruplet", names) == ""
