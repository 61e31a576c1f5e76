"""Tests of the loss base classes (losses/base.py) and the masked reductions (_masking.py)."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from keras import ops

from tests import reference
from tests.backend_utils import value_and_grad
from tfcontrast import _masking
from tfcontrast.losses.base import ContrastiveLossBase, MetricLoss


def _np(x):
    return keras.ops.convert_to_numpy(x)


class _ViewsLoss(ContrastiveLossBase):
    """Labels ignored, views (B, V, D): per-example sum of squares. Records its inputs."""

    labels = "ignored"
    embedding_ranks = (3,)

    def call(self, y_true, y_pred):
        self.seen = (y_true, y_pred)
        return ops.sum(ops.square(y_pred), axis=(1, 2))


class _OptionalLoss(ContrastiveLossBase):
    labels = "optional"
    embedding_ranks = (2, 3)

    def call(self, y_true, y_pred):
        self.seen = (y_true, y_pred)
        return ops.sum(ops.reshape(y_pred, (ops.shape(y_pred)[0], -1)), axis=1)


class _MeanPositiveDistance(MetricLoss):
    """Mean distance from each anchor to its positives (0 when it has none)."""

    def compute(self, labels, embeddings, ref_labels, ref_embeddings, offset):
        self.seen_offset = offset
        matrix = self.distance.to_distance(self.distance(embeddings, ref_embeddings))
        positive, _ = _masking.pair_masks(labels, ref_labels, offset)
        return _masking.masked_mean(matrix, positive)


# -- labels ---------------------------------------------------------------------------
def test_ignored_labels_accept_none(rng):
    views = rng.normal(size=(4, 2, 3)).astype("float32")
    loss = _ViewsLoss(reduction=None)
    out = _np(loss(None, views))
    np.testing.assert_allclose(out, np.sum(views.astype("float64") ** 2, axis=(1, 2)), rtol=1e-6)
    # Labels that are given anyway are ignored, even float ones.
    loss(np.zeros(4, "float32"), views)
    assert loss.seen[0] is None


def test_optional_labels(rng):
    emb = rng.normal(size=(4, 3)).astype("float32")
    loss = _OptionalLoss()
    loss(None, emb)
    assert loss.seen[0] is None
    loss(np.array([1, 2, 3, 4], "uint8"), emb)
    assert keras.backend.standardize_dtype(loss.seen[0].dtype) == "int32"
    np.testing.assert_array_equal(_np(loss.seen[0]), [1, 2, 3, 4])
    with pytest.raises(ValueError, match="y_true.*integer"):
        loss(np.ones(4, "float64"), emb)


def test_required_labels(rng):
    emb = rng.normal(size=(4, 3)).astype("float32")
    loss = _MeanPositiveDistance()
    with pytest.raises(ValueError, match="`y_true`.*required"):
        loss(None, emb)
    with pytest.raises(ValueError, match="`y_true` must hold integer.*float32"):
        loss(np.zeros(4, "float32"), emb)
    with pytest.raises(ValueError, match=r"`y_true` must have shape \(batch,\)"):
        loss(np.zeros((4, 2), "int32"), emb)
    with pytest.raises(ValueError, match=r"`y_true` must have shape \(batch,\)"):
        loss(np.int32(3), emb)
    with pytest.raises(ValueError, match="same batch size.*3 labels for 4"):
        loss(np.zeros(3, "int32"), emb)
    # (B, 1) labels are squeezed.
    labels = np.array([0, 0, 1, 1])
    np.testing.assert_allclose(_np(loss(labels[:, None], emb)), _np(loss(labels, emb)))


# -- embeddings -----------------------------------------------------------------------
def test_embedding_ranks(rng):
    with pytest.raises(ValueError, match=r"`y_pred` must have shape \(batch, views, dim\)"):
        _ViewsLoss()(None, rng.normal(size=(4, 3)).astype("float32"))
    with pytest.raises(ValueError, match="at least 2 views"):
        _ViewsLoss()(None, rng.normal(size=(4, 1, 3)).astype("float32"))
    with pytest.raises(ValueError, match=r"\(batch, dim\) or \(batch, views, dim\)"):
        _OptionalLoss()(None, rng.normal(size=(4,)).astype("float32"))
    with pytest.raises(ValueError, match=r"`y_pred` must have shape \(batch, dim\)"):
        _MeanPositiveDistance()(np.zeros(4, "int32"), rng.normal(size=(4, 2, 3)))


@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
def test_computes_in_float32_under_mixed_precision(policy, rng):
    keras.mixed_precision.set_global_policy(policy)
    low = keras.mixed_precision.Policy(policy).compute_dtype
    views = ops.cast(rng.normal(size=(4, 2, 3)), low)
    loss = _ViewsLoss()
    assert loss.dtype == "float32"
    value = loss(None, views)
    assert keras.backend.standardize_dtype(loss.seen[1].dtype) == "float32"
    assert keras.backend.standardize_dtype(value.dtype) == "float32"
    # Values that overflow float16 when squared stay finite.
    big = ops.cast(np.full((2, 2, 3), 300.0), low)
    assert np.isfinite(_np(loss(None, big)))


# -- reduction ------------------------------------------------------------------------
def test_reductions_and_sample_weight(rng):
    views = rng.normal(size=(5, 2, 3)).astype("float32")
    per = np.sum(views.astype("float64") ** 2, axis=(1, 2))
    w = rng.random(5).astype("float32")
    np.testing.assert_allclose(_np(_ViewsLoss()(None, views)), per.mean(), rtol=1e-5)
    np.testing.assert_allclose(
        _np(_ViewsLoss()(None, views, sample_weight=w)), np.sum(w * per) / 5, rtol=1e-5
    )
    np.testing.assert_allclose(
        _np(_ViewsLoss(reduction="sum")(None, views, sample_weight=w)), np.sum(w * per), rtol=1e-5
    )
    np.testing.assert_allclose(
        _np(_ViewsLoss(reduction="mean_with_sample_weight")(None, views, sample_weight=w)),
        np.sum(w * per) / np.sum(w),
        rtol=1e-5,
    )
    for reduction in (None, "none"):
        out = _np(_ViewsLoss(reduction=reduction)(None, views, sample_weight=w))
        assert out.shape == (5,)
        np.testing.assert_allclose(out, w * per, rtol=1e-5)


def test_fit_without_labels():
    """A loss that ignores labels trains through compile/fit with no `y` at all."""

    class Views(keras.Model):
        def __init__(self):
            super().__init__()
            self.dense = keras.layers.Dense(3)

        def call(self, x):
            return self.dense(x)

    model = Views()
    model.compile(optimizer=keras.optimizers.SGD(0.05), loss=_ViewsLoss())
    x = np.random.default_rng(0).normal(size=(16, 2, 4)).astype("float32")
    history = model.fit(x, batch_size=8, epochs=3, verbose=0)
    losses = history.history["loss"]
    assert np.all(np.isfinite(losses)) and losses[-1] < losses[0]


# -- MetricLoss -----------------------------------------------------------------------
@pytest.mark.parametrize("distance", ["cosine", "euclidean", "squared_euclidean", "manhattan"])
def test_metric_loss_anchors_against_batch(distance, rng):
    labels = np.array([0, 0, 1, 2, 2, 2], "int32")
    emb = rng.normal(size=(6, 4)).astype("float32")
    loss = _MeanPositiveDistance(distance=distance, reduction=None)
    d = reference.closeness(distance, emb)
    expected = [
        np.mean([d[i, j] for j in reference.positives_of(labels, i)])
        if reference.positives_of(labels, i)
        else 0.0
        for i in range(6)
    ]
    np.testing.assert_allclose(_np(loss(labels, emb)), expected, rtol=1e-4, atol=1e-5)
    assert loss.seen_offset == 0


@pytest.mark.tf_only(reason="tf.distribute strategy scope")
def test_metric_loss_references_outside_a_strategy(rng):
    labels = ops.convert_to_tensor(np.array([0, 1], "int32"))
    emb = ops.convert_to_tensor(rng.normal(size=(2, 3)).astype("float32"))
    ref_labels, ref_emb, offset = _MeanPositiveDistance().references(labels, emb)
    assert ref_labels is labels and ref_emb is emb and offset == 0
    # One replica under a strategy: still the local batch.
    with tf.distribute.OneDeviceStrategy("/cpu:0").scope():
        ref_labels, ref_emb, offset = _MeanPositiveDistance().references(labels, emb)
    assert offset == 0


def test_metric_loss_compute_is_abstract(rng):
    with pytest.raises(NotImplementedError):
        MetricLoss()(np.zeros(2, "int32"), rng.normal(size=(2, 3)).astype("float32"))


def test_metric_loss_config_and_distance_resolution():
    loss = _MeanPositiveDistance(distance="l2", name="mpd", reduction="sum")
    assert loss.distance.name == "euclidean"
    config = loss.get_config()
    assert "dtype" not in config
    assert config["name"] == "mpd" and config["reduction"] == "sum"
    assert config["distance"]["registered_name"] == "tfcontrast>EuclideanDistance"
    again = _MeanPositiveDistance.from_config(config)
    assert again.get_config() == config and again.distance.name == "euclidean"
    with pytest.raises(ValueError, match="distance"):
        _MeanPositiveDistance(distance="hamming")


def test_metric_loss_gradients_finite_with_duplicates():
    labels = np.array([0, 0, 1], "int32")
    emb = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 0.0]], "float32")
    for distance in ("cosine", "euclidean"):
        loss = _MeanPositiveDistance(distance=distance)
        value, (grad,) = value_and_grad(lambda e, loss=loss: loss(labels, e), emb)
        assert np.isfinite(_np(value)) and np.all(np.isfinite(_np(grad)))


# -- _masking -------------------------------------------------------------------------
def test_pair_masks_and_self_mask():
    labels = np.array([0, 1, 0], "int32")
    ref = np.array([1, 0, 1, 0, 0], "int32")
    # Anchors are references 2..4 (offset 2).
    pos, neg = _masking.pair_masks(labels, np.concatenate([ref[:2], labels]), offset=2)
    pos, neg = _np(pos), _np(neg)
    refs = np.concatenate([ref[:2], labels])
    for i in range(3):
        for j in range(5):
            assert pos[i, j] == float(labels[i] == refs[j] and j != i + 2)
            assert neg[i, j] == float(labels[i] != refs[j])
    # offset=None: disjoint anchors and references, nothing excluded.
    pos, _ = _masking.pair_masks(labels, labels, offset=None)
    np.testing.assert_array_equal(np.diag(_np(pos)), 1.0)
    np.testing.assert_array_equal(
        _np(_masking.self_mask(2, 4, 1)), [[False, True, False, False], [False, False, True, False]]
    )


def test_masked_reductions(rng):
    values = rng.normal(size=(3, 4)).astype("float32")
    mask = np.array([[1, 0, 1, 0], [0, 0, 0, 0], [1, 1, 1, 1]], "float32")
    mean = _np(_masking.masked_mean(values, mask))
    np.testing.assert_allclose(mean[0], values[0, [0, 2]].mean(), rtol=1e-6)
    assert mean[1] == 0.0
    np.testing.assert_allclose(mean[2], values[2].mean(), rtol=1e-6)
    mx, mn = _np(_masking.masked_max(values, mask)), _np(_masking.masked_min(values, mask))
    np.testing.assert_allclose(mx[[0, 2]], [values[0, [0, 2]].max(), values[2].max()])
    np.testing.assert_allclose(mn[[0, 2]], [values[0, [0, 2]].min(), values[2].min()])
    lse = _np(_masking.masked_logsumexp(values, mask))
    np.testing.assert_allclose(
        lse[[0, 2]],
        [np.log(np.exp(values[0, [0, 2]]).sum()), np.log(np.exp(values[2]).sum())],
        rtol=1e-5,
    )
    assert np.isfinite(lse[1]) and lse[1] < -1e8


def test_masked_mean_gradient_is_finite_on_empty_rows():
    values = np.ones((2, 3), "float32")
    mask = np.array([[0, 0, 0], [1, 0, 1]], "float32")
    _, (grad,) = value_and_grad(lambda v: _masking.masked_mean(v, mask), values)
    np.testing.assert_allclose(grad, [[0, 0, 0], [0.5, 0, 0.5]])


@pytest.mark.parametrize("axis", [1, 0])
def test_masked_logsumexp_value_and_gradient_match_numpy(axis):
    # The gradient is hand-written: check it against softmax-over-the-mask times the
    # upstream weights, on values large enough to overflow an unshifted exp.
    rng = np.random.default_rng(3)
    values = (rng.standard_normal((5, 6)) * 300.0).astype("float32")
    mask = rng.random((5, 6)) < 0.5
    empty = 2
    if axis == 1:
        mask[empty, :] = False
    else:
        mask[:, empty] = False
    weights = rng.uniform(0.5, 2.0, size=values.shape[1 - axis]).astype("float32")

    m = values if axis == 1 else values.T
    k = mask if axis == 1 else mask.T
    expected_value = np.zeros(len(m))
    expected_grad = np.zeros_like(m, dtype="float64")
    for i in range(len(m)):
        if not k[i].any():
            continue
        row = m[i][k[i]].astype("float64")
        top = row.max()
        expected_value[i] = top + np.log(np.exp(row - top).sum())
        expected_grad[i, k[i]] = weights[i] * np.exp(row - expected_value[i])
    if axis == 0:
        expected_grad = expected_grad.T

    value, (grad,) = value_and_grad(
        lambda v: _masking.masked_logsumexp(v, mask, axis=axis) * ops.convert_to_tensor(weights),
        values,
    )
    keep = np.arange(len(m)) != empty
    np.testing.assert_allclose(value[keep] / weights[keep], expected_value[keep], rtol=1e-6)
    assert value[empty] < -1e8
    np.testing.assert_allclose(grad, expected_grad, rtol=1e-5, atol=1e-7)
    assert np.all(np.isfinite(grad))


def test_logsumexp_without_mask_matches_numpy():
    values = np.array([[0.0, 1.0, 2.0], [-500.0, -501.0, -502.0]], "float32")
    value, (grad,) = value_and_grad(lambda v: _masking.masked_logsumexp(v), values)
    v64 = values.astype("float64")
    expected = np.log(np.exp(v64 - v64.max(1, keepdims=True)).sum(1)) + v64.max(1)
    np.testing.assert_allclose(value, expected, rtol=1e-6)
    np.testing.assert_allclose(grad, np.exp(v64 - expected[:, None]), rtol=1e-5)


def _log_ratio_reference(values, num, den, weights):
    """Float64 loops: value and gradient of `weights * (lse_den - lse_num)` per row, and
    the derivative of each row's ratio with respect to a scale of `values`."""
    rows = len(values)
    expected, d_scale = np.zeros(rows), np.zeros(rows)
    expected_grad = np.zeros(values.shape)
    for i in range(rows):
        if not num[i].any():
            continue
        v = values[i].astype("float64")

        def lse(m, v=v):
            top = v[m].max()
            return top + np.log(np.exp(v[m] - top).sum())

        p_den, p_num = np.zeros_like(v), np.zeros_like(v)
        p_den[den[i]] = np.exp(v[den[i]] - lse(den[i]))
        p_num[num[i]] = np.exp(v[num[i]] - lse(num[i]))
        expected[i] = lse(den[i]) - lse(num[i])
        expected_grad[i] = weights[i] * (p_den - p_num)
        d_scale[i] = ((p_den - p_num) * v).sum()
    return expected, expected_grad, d_scale


# Which path each case takes (checked on the inputs below): "unshifted" (every row has
# a numerator, every plain sum within the bounds), "no-numerator" (a row without one:
# the `any` lookup), "underflow" and "overflow" (every plain denominator sum outside
# the bounds: shifted by the row max), "mixed" (one row outside: the whole batch
# shifted), "own-shift" (after that shift, a numerator hundreds below its row max),
# "low-numerator" (plain sums within the bounds, but one row's numerator 100 below
# the rest of its row: its own shift without the row-max one).
_LOG_RATIO_CASES = {
    "unshifted": (1.0, 0.0, False),
    "no-numerator": (1.0, 0.0, True),
    "underflow": (1.0, -500.0, True),
    "overflow": (1.0, 500.0, False),
    "mixed": (1.0, 0.0, False),
    "own-shift": (400.0, 0.0, True),
    "low-numerator": (1.0, 0.0, False),
}


@pytest.mark.parametrize("case", list(_LOG_RATIO_CASES))
def test_masked_log_ratio_value_and_gradient_match_numpy(case):
    spread, offset, empty_row = _LOG_RATIO_CASES[case]
    rng = np.random.default_rng(5)
    values = (rng.standard_normal((6, 7)) * spread + offset).astype("float32")
    den = rng.random((6, 7)) < 0.8
    num = den & (rng.random((6, 7)) < 0.5)
    num[:, 0] = den[:, 0] = True  # every row has a numerator ...
    if empty_row:
        num[1] = False  # ... but this one: 0, no gradient
    den[2] = True
    num[2] = False
    num[2, int(np.argmin(values[2]))] = True  # the row's smallest value alone on top
    if case == "mixed":
        values[4] += 500.0
    if case == "low-numerator":
        num[3] = False
        num[3, 0] = True
        values[3, 0] = -100.0
    weights = rng.uniform(0.5, 2.0, size=6).astype("float32")
    expected, expected_grad, _ = _log_ratio_reference(values, num, den, weights)

    exps = np.exp(values.astype("float64"))
    plain, plain_num = np.where(den, exps, 0.0).sum(1), np.where(num, exps, 0.0).sum(1)
    inside = (plain >= _masking._TINY) & (plain <= _masking._HUGE)
    if case in ("underflow", "overflow"):
        assert not inside.any()
    elif case == "mixed":
        assert np.array_equal(inside, np.arange(6) != 4)
    elif case == "own-shift":
        assert not inside.all()
    else:
        assert inside.all()
    if case in ("unshifted", "mixed"):
        assert plain_num.min() >= _masking._TINY
    if case == "own-shift":
        assert expected[2] > 100.0  # the numerator's own shift was needed
    if case == "low-numerator":
        assert plain_num[3] < _masking._TINY and expected[3] > 90.0
    value, (grad,) = value_and_grad(
        lambda v: _masking.masked_log_ratio(v, num, den, axis=1) * ops.convert_to_tensor(weights),
        values,
    )
    np.testing.assert_allclose(value / weights, expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(grad, expected_grad, rtol=1e-4, atol=1e-6)
    if empty_row:
        assert value[1] == 0.0 and np.all(grad[1] == 0.0)


def test_masked_log_ratio_computes_float16_in_float32():
    # float16 has no room for the bounds (1e20 is inf there): the values are cast up.
    values = np.array([[-20.0, -21.0, -22.0], [12.0, 11.5, 10.0]], "float16")
    num = np.array([[False, True, False], [True, False, True]])
    expected, _, _ = _log_ratio_reference(
        values.astype("float32"), num, np.ones((2, 3), bool), [1, 1]
    )
    got = _np(_masking.masked_log_ratio(values, num))
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, expected, rtol=1e-5)


def test_masked_log_ratio_scale_number_and_tensor():
    # A number scale is folded into the hand-written gradient, a tensor one multiplies
    # the values first: both give the ratio of `scale * values`, and a tensor scale
    # receives its own gradient.
    rng = np.random.default_rng(6)
    values = rng.standard_normal((5, 8)).astype("float32")
    den = np.ones((5, 8), bool)
    np.fill_diagonal(den, False)
    num = den & (rng.random((5, 8)) < 0.4)
    num[:, 7] = True
    num[3] = False
    scale = -0.5
    weights = rng.uniform(0.5, 2.0, size=5).astype("float32")
    expected, expected_grad, d_scale = _log_ratio_reference(scale * values, num, den, weights)

    value, (grad,) = value_and_grad(
        lambda v: (
            _masking.masked_log_ratio(v, num, den, axis=1, scale=scale)
            * ops.convert_to_tensor(weights)
        ),
        values,
    )
    np.testing.assert_allclose(value / weights, expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(grad, scale * expected_grad, rtol=1e-4, atol=1e-6)

    value_t, (grad_t, grad_s) = value_and_grad(
        lambda v, s: (
            _masking.masked_log_ratio(v, num, den, axis=1, scale=s) * ops.convert_to_tensor(weights)
        ),
        values,
        np.float32(scale),
    )
    np.testing.assert_allclose(value_t, value, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(grad_t, grad, rtol=1e-5, atol=1e-7)
    # d/ds of sum_i w_i R_i(s v_i), with R_i's derivative taken at the scaled values.
    np.testing.assert_allclose(grad_s, (weights * d_scale / scale).sum(), rtol=1e-4)
