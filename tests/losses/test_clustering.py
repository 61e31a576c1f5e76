"""DINO and SwAV loss pieces against NumPy references written here (loops, closed forms):
the teacher-temperature schedule, the centre update, the swapped cross-entropy."""

import numpy as np
import pytest

from tests.backend_utils import to_numpy, value_and_grad
from tfcontrast import losses
from tfcontrast.losses import clustering


def softmax(x):
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def test_teacher_temperature_is_a_linear_warmup_then_constant():
    for step, expected in [(0, 0.04), (5, 0.055), (10, 0.07), (25, 0.07)]:
        got = float(to_numpy(clustering.teacher_temperature(step, 10, 0.04, 0.07)))
        assert got == pytest.approx(expected, abs=1e-7), step
    # No warm-up: the final temperature from the first step.
    assert float(to_numpy(clustering.teacher_temperature(0, 0, 0.04, 0.07))) == pytest.approx(0.07)


def test_centre_update_is_an_ema_of_the_mean_teacher_logit(rng):
    center = rng.normal(size=(5,)).astype("float32")
    teacher = rng.normal(size=(6, 2, 5)).astype("float32")
    got = to_numpy(clustering.updated_center(center, teacher, momentum=0.9))
    rows = [teacher[b, v] for b in range(6) for v in range(2)]
    expected = 0.9 * center + 0.1 * (sum(rows) / len(rows))
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-7)


def test_teacher_probabilities_are_centred_and_sharpened(rng):
    logits, center = rng.normal(size=(4, 2, 6)), rng.normal(size=(6,))
    got = to_numpy(clustering.teacher_probabilities(logits.astype("float32"), center, 0.04))
    np.testing.assert_allclose(got, softmax((logits - center) / 0.04), rtol=1e-4, atol=1e-6)


def reference_dino(targets, logits, t_s):
    """Per-example mean over (teacher view i, student view j != i) of H(P_t, P_s): a loop."""
    out = []
    for b in range(targets.shape[0]):
        terms = []
        for i in range(targets.shape[1]):
            for j in range(logits.shape[1]):
                if i != j:
                    p_s = softmax(logits[b, j] / t_s)
                    terms.append(-np.sum(targets[b, i] * np.log(p_s)))
        out.append(np.mean(terms))
    return np.array(out)


@pytest.mark.parametrize("student_views", [2, 4])
def test_dino_loss_matches_numpy_and_only_the_student_gets_gradient(rng, student_views):
    targets = softmax(rng.normal(size=(5, 2, 7)) / 0.1).astype("float32")
    logits = rng.normal(size=(5, student_views, 7)).astype("float32")
    loss = losses.DINOLoss(student_temperature=0.1, reduction=None)
    y_pred = np.concatenate([targets, logits], axis=1)
    value, (grad,) = value_and_grad(lambda y: loss(None, y), y_pred)
    np.testing.assert_allclose(value, reference_dino(targets, logits, 0.1), rtol=1e-5)
    assert np.all(grad[:, :2] == 0) and np.abs(grad[:, 2:]).max() > 0
    assert losses.DINOLoss.from_config(loss.get_config()).get_config() == loss.get_config()


def test_dino_loss_bad_arguments_name_them():
    with pytest.raises(ValueError, match="student_temperature"):
        losses.DINOLoss(student_temperature=0)
    with pytest.raises(ValueError, match="teacher_views"):
        losses.DINOLoss(teacher_views=0)
    with pytest.raises(ValueError, match="teacher views"):
        losses.DINOLoss()(None, np.zeros((2, 3, 4), "float32"))


def test_prototypes_are_cosines(rng):
    from tfcontrast.layers import Prototypes

    layer = Prototypes(4)
    x = rng.normal(size=(3, 5)).astype("float32")
    scores = to_numpy(layer(x))
    kernel = to_numpy(layer.kernel)
    expected = (x / np.linalg.norm(x, axis=1, keepdims=True)) @ (
        kernel / np.linalg.norm(kernel, axis=0, keepdims=True)
    )
    np.testing.assert_allclose(scores, expected, rtol=1e-5, atol=1e-6)
    for bad in (1, 0, 2.0, True):
        with pytest.raises(ValueError, match="num_prototypes"):
            Prototypes(bad)


def numpy_sinkhorn(scores, epsilon, iterations):
    """SwAV's `distributed_sinkhorn` on one device, written with loops."""
    q = np.exp(scores.astype(np.float64) / epsilon).T  # (K, B)
    k, b = q.shape
    q /= q.sum()
    for _ in range(iterations):
        for row in range(k):
            q[row] /= q[row].sum() * k
        for col in range(b):
            q[:, col] /= q[:, col].sum() * b
    return (q * b).T


@pytest.mark.parametrize("iterations", [1, 3])
def test_sinkhorn_matches_a_numpy_loop(rng, iterations):
    scores = np.tanh(rng.normal(size=(6, 4))).astype("float32")
    got = to_numpy(clustering.sinkhorn_knopp(scores, 0.05, iterations))
    expected = numpy_sinkhorn(scores, 0.05, iterations)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-7)
    np.testing.assert_allclose(got.sum(axis=1), 1.0, rtol=1e-5)
    # Scores far wider than cosines: no overflow, no NaN (the global maximum is shifted
    # away, the divisions floored).
    large = to_numpy(clustering.sinkhorn_knopp(scores * 50.0, 0.05, iterations))
    assert np.all(np.isfinite(large)) and np.all(large >= 0)


def test_sinkhorn_converges_to_equal_prototype_mass(rng):
    scores = np.tanh(rng.normal(size=(12, 3))).astype("float32")
    codes = to_numpy(clustering.sinkhorn_knopp(scores, 0.5, 50))
    np.testing.assert_allclose(codes.sum(axis=0), 12 / 3, rtol=1e-3)


def reference_swav(scores, t, epsilon, iterations, assign=2):
    out = np.zeros(scores.shape[0])
    for i in range(assign):
        q = numpy_sinkhorn(scores[:, i], epsilon, iterations)
        for j in range(scores.shape[1]):
            if j != i:
                for b in range(scores.shape[0]):
                    out[b] -= np.sum(q[b] * np.log(softmax(scores[b, j] / t)))
    return out / (assign * (scores.shape[1] - 1))


@pytest.mark.parametrize("views", [2, 3])
def test_swav_loss_matches_numpy_and_codes_carry_no_gradient(rng, views):
    scores = np.tanh(rng.normal(size=(6, views, 5))).astype("float32")
    loss = losses.SwAVLoss(reduction=None)
    value, (grad,) = value_and_grad(lambda y: loss(None, y), scores)
    np.testing.assert_allclose(value, reference_swav(scores, 0.1, 0.05, 3), rtol=1e-4)
    # Gradient: the softmax term only (codes are constants), summed over the targets.
    expected = np.zeros_like(scores, dtype=np.float64)
    for i in range(2):
        q = numpy_sinkhorn(scores[:, i], 0.05, 3)
        for j in range(views):
            if j != i:
                expected[:, j] += (softmax(scores[:, j] / 0.1) - q) / 0.1 / (2 * (views - 1))
    np.testing.assert_allclose(grad, expected, rtol=1e-3, atol=1e-5)
    assert losses.SwAVLoss.from_config(loss.get_config()).get_config() == loss.get_config()


def test_swav_loss_bad_arguments_name_them():
    for arg, value in [
        ("temperature", 0.0),
        ("epsilon", -1.0),
        ("sinkhorn_iterations", 0),
        ("assign_views", 0),
    ]:
        with pytest.raises(ValueError, match=f"`{arg}`"):
            losses.SwAVLoss(**{arg: value})
    with pytest.raises(ValueError, match="at least 3 views"):
        losses.SwAVLoss(assign_views=3)(None, np.zeros((2, 2, 4), "float32"))
