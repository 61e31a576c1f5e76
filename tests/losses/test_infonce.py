import math

import keras
import numpy as np
import pytest

from tests.backend_utils import value_and_grad
from tests.reference import numerical_gradient
from tfcontrast import layers
from tfcontrast import losses as L

# -- independent NumPy references (plain loops) -----------------------------------------


def _norm(x):
    n = np.linalg.norm(x, axis=-1, keepdims=True)
    return np.where(n > 0, x / np.maximum(n, 1e-30), 0.0)


def _lse(values):
    values = np.asarray(values, "float64")
    m = values.max()
    return m + math.log(np.exp(values - m).sum())


def _softplus(x):
    return math.log1p(math.exp(-abs(x))) + max(x, 0.0)


def ntxent_ref(x, t):
    z = _norm(x.astype("float64"))
    b, v, _ = z.shape
    out = np.zeros(b)
    for i in range(b):
        for k in range(v):
            denom = [z[i, k] @ z[j, m] / t for j in range(b) for m in range(v) if (j, m) != (i, k)]
            terms = [-(z[i, k] @ z[i, m] / t - _lse(denom)) for m in range(v) if m != k]
            out[i] += np.mean(terms) / v
    return out


def infonce_ref(x, t, negatives=None):
    z = _norm(x.astype("float64"))
    q, k = z[:, 0], z[:, 1]
    out = np.zeros(len(z))
    for i in range(len(z)):
        if negatives is None:
            logits = [q[i] @ k[j] / t for j in range(len(z))]
        else:
            n = _norm(negatives.astype("float64"))
            logits = [q[i] @ k[i] / t] + [q[i] @ n[j] / t for j in range(len(n))]
        out[i] = _lse(logits) - q[i] @ k[i] / t
    return out


def nce_ref(x, t):
    z = _norm(x.astype("float64"))
    b, v, _ = z.shape
    out = np.zeros(b)
    for i in range(b):
        for k in range(v):
            pos = np.mean([_softplus(-(z[i, k] @ z[i, m]) / t) for m in range(v) if m != k])
            neg = sum(
                _softplus(z[i, k] @ z[j, m] / t) for j in range(b) if j != i for m in range(v)
            )
            out[i] += (pos + neg) / v
    return out


def dcl_ref(x, t, sigma=None, weights_at=None):
    # DCLW's weights carry no gradient: `weights_at` computes them from other embeddings
    # (the unperturbed ones in a finite-difference check).
    z = _norm(x.astype("float64"))
    zw = z if weights_at is None else _norm(weights_at.astype("float64"))
    b, v, _ = z.shape
    out = np.zeros(b)
    for i in range(b):
        for k in range(v):
            neg = [z[i, k] @ z[j, m] / t for j in range(b) if j != i for m in range(v)]
            terms = []
            for m in range(v):
                if m == k:
                    continue
                w = 1.0
                if sigma is not None:
                    e = np.array([math.exp(zw[j, k] @ zw[j, m] / sigma) for j in range(b)])
                    w = 2.0 - e[i] / e.mean()
                terms.append(-w * (z[i, k] @ z[i, m]) / t + _lse(neg))
            out[i] += np.mean(terms) / v
    return out


def clip_ref(x, scale):
    z = _norm(x.astype("float64"))
    a, c = z[:, 0], z[:, 1]
    b = len(z)
    out = np.zeros(b)
    for i in range(b):
        row = [scale * a[i] @ c[j] for j in range(b)]
        col = [scale * c[i] @ a[j] for j in range(b)]
        out[i] = 0.5 * ((_lse(row) - row[i]) + (_lse(col) - col[i]))
    return out


def siglip_ref(x, scale, bias):
    z = _norm(x.astype("float64"))
    b = len(z)
    out = np.zeros(b)
    for i in range(b):
        for j in range(b):
            sign = 1.0 if i == j else -1.0
            out[i] += _softplus(-sign * (scale * z[i, 0] @ z[j, 1] + bias))
    return out


def cmc_ref(x, t, mode):
    z = _norm(x.astype("float64"))
    b, v, _ = z.shape
    if mode == "full_graph":
        pairs = [(a, c) for a in range(v) for c in range(a + 1, v)]
    else:
        pairs = [(0, c) for c in range(1, v)]
    out = np.zeros(b)
    for i in range(b):
        for a, c in pairs:
            for u, w in ((a, c), (c, a)):
                logits = [z[i, u] @ z[j, w] / t for j in range(b)]
                out[i] += _lse(logits) - logits[i]
    return out


def supcon_ref(labels, x, t, base_t=None):
    z = _norm(x.astype("float64"))
    if z.ndim == 2:
        z = z[:, None]
    b, v, _ = z.shape
    scale = 1.0 if base_t is None else t / base_t
    out = np.zeros(b)
    for i in range(b):
        for k in range(v):
            others = [(j, m) for j in range(b) for m in range(v) if (j, m) != (i, k)]
            denom = _lse([z[i, k] @ z[j, m] / t for j, m in others])
            pos = [z[i, k] @ z[j, m] / t - denom for j, m in others if labels[j] == labels[i]]
            out[i] += (-scale * np.mean(pos) if pos else 0.0) / v
    return out


def _views(rng, b=6, v=2, d=5):
    return rng.normal(size=(b, v, d)).astype("float32")


def _per_example(loss, x, y=None):
    reduction, loss.reduction = loss.reduction, None
    try:
        return keras.ops.convert_to_numpy(loss(y, x))
    finally:
        loss.reduction = reduction


# -- values against the references --------------------------------------------------------

CASES = [
    (lambda: L.NTXentLoss(0.2), lambda x: ntxent_ref(x, 0.2), (2, 3)),
    (lambda: L.NCELoss(0.5), lambda x: nce_ref(x, 0.5), (2, 3)),
    (lambda: L.DCLLoss(0.3), lambda x: dcl_ref(x, 0.3), (2, 3)),
    (lambda: L.DCLWLoss(0.3, sigma=0.5), lambda x: dcl_ref(x, 0.3, 0.5), (2, 3)),
    (lambda: L.InfoNCELoss(0.2), lambda x: infonce_ref(x, 0.2), (2,)),
    (lambda: L.CLIPLoss(0.1), lambda x: clip_ref(x, 10.0), (2,)),
    (lambda: L.CLIPLoss(0.1, learnable_temperature=True), lambda x: clip_ref(x, 10.0), (2,)),
    (lambda: L.SigLIPLoss(), lambda x: siglip_ref(x, 10.0, -10.0), (2,)),
    (lambda: L.SigLIPLoss(3.0, -1.0, learnable=False), lambda x: siglip_ref(x, 3.0, -1.0), (2,)),
    (lambda: L.MultiViewContrastiveLoss(0.2), lambda x: cmc_ref(x, 0.2, "full_graph"), (2, 4)),
    (
        lambda: L.MultiViewContrastiveLoss(0.2, mode="core_view"),
        lambda x: cmc_ref(x, 0.2, "core_view"),
        (4,),
    ),
]
IDS = [
    "ntxent",
    "nce",
    "dcl",
    "dclw",
    "infonce",
    "clip",
    "clip_learnable",
    "siglip",
    "siglip_fixed",
    "cmc_full",
    "cmc_core",
]


@pytest.mark.parametrize("make, ref, views", CASES, ids=IDS)
def test_matches_numpy_reference(rng, make, ref, views):
    for v in views:
        x = _views(rng, v=v)
        loss = make()
        per_example = _per_example(loss, x)
        assert per_example.shape == (6,) and per_example.dtype == np.float32
        np.testing.assert_allclose(per_example, ref(x), rtol=2e-5, atol=2e-5)
        np.testing.assert_allclose(float(loss(None, x)), ref(x).mean(), rtol=2e-5, atol=2e-5)


def _reference_at(name, ref):
    """`x0 -> reference` to differentiate at `x0`. DCLW's weights carry no gradient, so
    its reference keeps them at `x0`."""
    if name == "dclw":
        return lambda x0: lambda x: dcl_ref(x, 0.3, 0.5, weights_at=x0)
    return lambda x0: ref


GRADIENT_CASES = [
    (make, _reference_at(name, ref), views)
    for (make, ref, views), name in zip(CASES, IDS, strict=True)
]


@pytest.mark.parametrize("make, ref_at, views", GRADIENT_CASES, ids=IDS)
def test_gradient_matches_finite_differences(rng, make, ref_at, views):
    # The hand-written gradients (log-sum-exp, the in-batch Gram logits) against
    # central differences of the NumPy loops, at every coordinate.
    for v in views:
        x = rng.normal(size=(4, v, 3)).astype("float32")
        _, (grad,) = value_and_grad(lambda y, loss=make(): loss(None, y), x)
        ref = ref_at(x)
        expected = numerical_gradient(lambda y, ref=ref: ref(y).mean(), x)
        np.testing.assert_allclose(grad, expected, rtol=2e-3, atol=2e-4)


@pytest.mark.parametrize("make, ref, views", CASES, ids=IDS)
def test_batch_permutation_invariance_and_finite_gradients(rng, make, ref, views):
    x = _views(rng, v=views[-1])
    x[0] = 0.0  # a zero embedding must stay finite
    perm = rng.permutation(len(x))
    loss = make()
    np.testing.assert_allclose(
        _per_example(loss, x[perm]), _per_example(loss, x)[perm], rtol=1e-5, atol=1e-5
    )
    value, (grad,) = value_and_grad(lambda v: loss(None, v), x)
    assert np.isfinite(float(value)) and np.isfinite(grad).all() and np.abs(grad).sum() > 0


def test_ntxent_identical_views_orthogonal_samples_closed_form():
    b, t = 4, 0.5
    x = np.stack([np.eye(8)[:b] * 3.0] * 2, axis=1).astype("float32")
    # Positive cosine 1, all 2B - 2 negatives cosine 0.
    expected = math.log(1.0 + (2 * b - 2) * math.exp(-1.0 / t))
    np.testing.assert_allclose(float(L.NTXentLoss(t)(None, x)), expected, rtol=1e-5)


def test_ntxent_equals_lightly_form_two_views(rng):
    # lightly: mean cross entropy over the 2N rows of [[z1z2, z1z1\diag], [z2z1, z2z2\diag]].
    x, t = _views(rng, b=5), 0.5
    z = _norm(x.astype("float64"))
    rows = []
    for a, c in ((0, 1), (1, 0)):
        for i in range(5):
            logits = [z[i, a] @ z[j, c] / t for j in range(5)]
            logits += [z[i, a] @ z[j, a] / t for j in range(5) if j != i]
            rows.append(_lse(logits) - logits[i])
    np.testing.assert_allclose(float(L.NTXentLoss(t)(None, x)), np.mean(rows), rtol=1e-5)


def test_infonce_with_queue_uses_old_queue_then_enqueues(rng):
    queue = layers.MemoryQueue(5, 4)
    old = rng.normal(size=(3, 4)).astype("float32")
    queue.enqueue(old)
    x = _views(rng, b=4, d=4)
    frozen = L.InfoNCELoss(0.2, queue=queue, update_queue=False)
    np.testing.assert_allclose(_per_example(frozen, x), infonce_ref(x, 0.2, old), rtol=2e-5)
    assert int(queue.filled.numpy()) == 3
    value = L.InfoNCELoss(0.2, queue=queue)(
        None, x
    )  # this call enqueues the 4 keys: 7 rows into 5 slots
    np.testing.assert_allclose(float(value), infonce_ref(x, 0.2, old).mean(), rtol=2e-5)
    assert int(queue.filled.numpy()) == 5 and int(queue.pointer.numpy()) == 2
    keys = _norm(x[:, 1])
    np.testing.assert_allclose(queue.buffer.numpy()[[3, 4, 0, 1]], keys, rtol=1e-5, atol=1e-6)
    frozen(None, x)
    assert int(queue.pointer.numpy()) == 2


def test_nce_with_queue(rng):
    queue = layers.MemoryQueue(6, 4)
    negatives = rng.normal(size=(4, 4)).astype("float32")
    queue.enqueue(negatives)
    x = _views(rng, b=3, d=4)
    loss = L.NCELoss(0.5, queue=queue, update_queue=False)
    z, n = _norm(x.astype("float64")), _norm(negatives.astype("float64"))
    expected = [
        _softplus(-(z[i, 0] @ z[i, 1]) / 0.5) + sum(_softplus(z[i, 0] @ r / 0.5) for r in n)
        for i in range(3)
    ]
    np.testing.assert_allclose(_per_example(loss, x), expected, rtol=2e-5)


def test_empty_queue_gives_zero(rng):
    loss = L.InfoNCELoss(queue=layers.MemoryQueue(8, 5), update_queue=False)
    assert float(loss(None, _views(rng))) == 0.0


@pytest.mark.parametrize("base_t", [None, 0.07])
@pytest.mark.parametrize("views", [1, 2])
def test_supcon_matches_reference(rng, views, base_t):
    labels = np.array([0, 1, 0, 2, 1, 3], "int32")  # label 3 has a positive only via views
    x = rng.normal(size=(6, views, 5)).astype("float32")
    if views == 1:
        x = x[:, 0]
    loss = L.SupConLoss(0.1, base_temperature=base_t)
    expected = supcon_ref(labels, x, 0.1, base_t)
    np.testing.assert_allclose(_per_example(loss, x, labels), expected, rtol=2e-5, atol=2e-6)
    if views == 1:
        assert expected[-1] == 0.0  # no positive: 0, not NaN


def test_supcon_needs_labels_and_is_finite(rng):
    with pytest.raises(ValueError, match="y_true"):
        L.SupConLoss()(None, _views(rng))
    value, (grad,) = value_and_grad(
        lambda x: L.SupConLoss()(np.array([0, 1, 2, 3]), x), np.zeros((4, 2, 3), "float32")
    )
    assert np.isfinite(float(value)) and np.isfinite(grad).all()


def test_clip_and_siglip_accept_a_pair(rng):
    x = _views(rng)
    for loss in (L.CLIPLoss(), L.SigLIPLoss()):
        np.testing.assert_allclose(
            float(loss(None, (x[:, 0], x[:, 1]))), float(loss(None, x)), rtol=1e-6
        )


def test_mutual_information_bound(rng):
    x = _views(rng)
    metric = L.MutualInformationBound(temperature=0.2)
    metric.update_state(None, x)
    z = _norm(x.astype("float64"))
    swapped = z[:, ::-1]
    expected = math.log(6) - 0.5 * (infonce_ref(z, 0.2).mean() + infonce_ref(swapped, 0.2).mean())
    np.testing.assert_allclose(float(metric.result()), expected, rtol=1e-5)
    aligned = np.stack([np.eye(6) * 2.0] * 2, axis=1).astype("float32")
    metric.reset_state()
    metric.update_state(None, aligned)
    # Positive cosine 1, negatives 0: L = log(1 + 5 exp(-1 / t)), just under log(K).
    expected = math.log(6) - math.log(1.0 + 5.0 * math.exp(-5.0))
    np.testing.assert_allclose(float(metric.result()), expected, rtol=1e-5)


# -- bad input ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "cls",
    [
        L.NTXentLoss,
        L.NCELoss,
        L.DCLLoss,
        L.DCLWLoss,
        L.InfoNCELoss,
        L.CLIPLoss,
        L.MultiViewContrastiveLoss,
        L.SupConLoss,
        L.MutualInformationBound,
    ],
)
@pytest.mark.parametrize("t", [0.0, -0.1])
def test_non_positive_temperature(cls, t):
    with pytest.raises(ValueError, match="temperature"):
        cls(temperature=t)


def test_bad_arguments_and_shapes(rng):
    with pytest.raises(ValueError, match="sigma"):
        L.DCLWLoss(sigma=0.0)
    with pytest.raises(ValueError, match="mode"):
        L.MultiViewContrastiveLoss(mode="star")
    with pytest.raises(ValueError, match="init_scale"):
        L.SigLIPLoss(init_scale=0.0)
    with pytest.raises(ValueError, match="queue"):
        L.InfoNCELoss(queue="big")
    for loss in (L.NTXentLoss(), L.DCLLoss(), L.MultiViewContrastiveLoss(), L.InfoNCELoss()):
        with pytest.raises(ValueError, match="y_pred.*2 views"):
            loss(None, _views(rng, v=1))
        with pytest.raises(ValueError, match="y_pred"):
            loss(None, rng.normal(size=(4, 5)).astype("float32"))
    for loss in (L.InfoNCELoss(), L.CLIPLoss(), L.SigLIPLoss()):
        with pytest.raises(ValueError, match=r"y_pred.*\(batch, 2, dim\)"):
            loss(None, _views(rng, v=3))
    with pytest.raises(ValueError, match="same dim"):
        L.CLIPLoss()(None, (np.zeros((4, 5), "float32"), np.zeros((4, 6), "float32")))
    with pytest.raises(ValueError, match="queue"):
        L.InfoNCELoss(queue=layers.MemoryQueue(4, 3))(None, _views(rng, d=5))
    with pytest.raises(ValueError, match="y_pred"):
        L.NCELoss(queue=layers.MemoryQueue(4, 5))(None, _views(rng, v=3))


# -- serialization, mixed precision, compile / fit --------------------------------------------


@pytest.mark.parametrize(
    "loss",
    [
        L.NTXentLoss(0.3),
        L.NCELoss(0.3, queue=layers.MemoryQueue(8, 5), update_queue=False),
        L.DCLLoss(0.3),
        L.DCLWLoss(0.3, sigma=0.7),
        L.InfoNCELoss(0.3, queue=layers.MemoryQueue(8, 5)),
        L.CLIPLoss(0.05, learnable_temperature=True, max_scale=50.0),
        L.SigLIPLoss(5.0, -2.0),
        L.MultiViewContrastiveLoss(0.3, mode="core_view"),
        L.SupConLoss(0.2, base_temperature=0.07),
    ],
    ids=lambda loss: type(loss).__name__,
)
def test_serialization_round_trip(loss):
    clone = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(loss))
    assert type(clone) is type(loss)
    assert clone.get_config() == loss.get_config()


def test_metric_serialization():
    metric = L.MutualInformationBound(temperature=0.3)
    clone = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(metric))
    assert clone.temperature == 0.3


@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
def test_mixed_precision_computes_in_float32(rng, policy):
    keras.mixed_precision.set_global_policy(policy)
    x = keras.ops.cast(_views(rng) * 30.0, policy.split("_")[1])
    for loss in (L.NTXentLoss(0.05), L.CLIPLoss(), L.SigLIPLoss(), L.DCLLoss(0.05)):
        value = loss(None, x)
        assert keras.backend.standardize_dtype(value.dtype) == "float32"
        assert np.isfinite(float(value))


def _view_model(views=2, dim=4):
    inputs = keras.Input((views, 6))
    return keras.Model(inputs, keras.layers.Dense(dim)(inputs))


def test_fit_without_labels_and_saved_model(rng, tmp_path):
    x = rng.normal(size=(16, 2, 6)).astype("float32")
    model = _view_model()
    model.compile(optimizer="adam", loss=L.NTXentLoss(0.2), metrics=[L.MutualInformationBound(0.2)])
    history = model.fit(x, batch_size=8, epochs=2, verbose=0)
    assert np.isfinite(history.history["loss"]).all()
    assert "mutual_information_bound" in history.history
    path = str(tmp_path / "ntxent.keras")
    model.save(path)
    reloaded = keras.saving.load_model(path)
    assert isinstance(reloaded.loss, L.NTXentLoss) and reloaded.loss.temperature == 0.2
    np.testing.assert_allclose(
        reloaded.evaluate(x, verbose=0, return_dict=True)["loss"],
        model.evaluate(x, verbose=0, return_dict=True)["loss"],
        rtol=1e-5,
    )


def test_learnable_scales_are_trained_when_the_model_owns_them(rng):
    x = rng.normal(size=(16, 2, 6)).astype("float32")
    for loss in (L.CLIPLoss(0.5, learnable_temperature=True), L.SigLIPLoss()):
        model = _view_model()
        model.logit_scale = loss.logit_scale
        assert any(v is loss.logit_scale.log_scale for v in model.trainable_variables)
        before = [v.numpy().copy() for v in loss.logit_scale.weights]
        model.compile(optimizer=keras.optimizers.Adam(0.05), loss=loss, jit_compile=True)
        model.fit(x, batch_size=8, epochs=1, verbose=0)
        after = [v.numpy() for v in loss.logit_scale.weights]
        assert all(abs(a - b) > 1e-4 for a, b in zip(after, before, strict=True))
