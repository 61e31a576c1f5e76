import math

import keras
import numpy as np
import pytest

from tests.backend_utils import grads_wrt_weights, to_numpy, value_and_grad
from tfcontrast import layers
from tfcontrast import losses as L

# -- independent NumPy references (float64, loops over examples and classes) ----------------


def _unit(v):
    v = np.asarray(v, "float64")
    return v / np.linalg.norm(v)


def _cross_entropy(logits, target):
    logits = np.asarray(logits, "float64")
    top = logits.max()
    return top + math.log(np.exp(logits - top).sum()) - logits[target]


def _class_cosines(x, w, num_classes, num_centers):
    """cos theta_c of one embedding to every class: the closest of its sub-centres."""
    out = np.zeros(num_classes)
    for c in range(num_classes):
        out[c] = max(float(_unit(x) @ _unit(w[c * num_centers + k])) for k in range(num_centers))
    return out


def arcface_ref(x, w, y, margin=0.5, scale=64.0, num_centers=1, easy_margin=False):
    num_classes = len(w) // num_centers
    out = np.zeros(len(x))
    for i in range(len(x)):
        cos = _class_cosines(x[i], w, num_classes, num_centers)
        c = cos[y[i]]
        theta = math.acos(min(max(c, -1.0), 1.0))
        if easy_margin:
            target = math.cos(theta + margin) if c > 0 else c
        elif theta < math.pi - margin:
            target = math.cos(theta + margin)
        else:  # past pi - m: the linear threshold fallback of the ArcFace code
            target = c - margin * math.sin(margin)
        logits = scale * cos
        logits[y[i]] = scale * target
        out[i] = _cross_entropy(logits, y[i])
    return out


def cosface_ref(x, w, y, margin=0.35, scale=64.0):
    out = np.zeros(len(x))
    for i in range(len(x)):
        cos = _class_cosines(x[i], w, len(w), 1)
        cos[y[i]] -= margin
        out[i] = _cross_entropy(scale * cos, y[i])
    return out


def normalized_softmax_ref(x, w, y, temperature=0.05):
    out = np.zeros(len(x))
    for i in range(len(x)):
        out[i] = _cross_entropy(_class_cosines(x[i], w, len(w), 1) / temperature, y[i])
    return out


def proxy_nca_ref(x, w, y, softmax_scale=1.0):
    out = np.zeros(len(x))
    for i in range(len(x)):
        dist = [np.sum((_unit(x[i]) - _unit(p)) ** 2) for p in w]
        out[i] = _cross_entropy(-softmax_scale * np.asarray(dist), y[i])
    return out


def proxy_anchor_ref(x, w, y, margin=0.1, alpha=32.0):
    pos_terms, neg_terms = [], []
    for p in range(len(w)):
        pos, neg = 0.0, 0.0
        for i in range(len(x)):
            s = float(_unit(x[i]) @ _unit(w[p]))
            if y[i] == p:
                pos += math.exp(-alpha * (s - margin))
            else:
                neg += math.exp(alpha * (s + margin))
        if any(y == p):
            pos_terms.append(math.log1p(pos))
        neg_terms.append(math.log1p(neg))
    value = sum(pos_terms) / len(pos_terms) + sum(neg_terms) / len(w)
    return np.full(len(x), value)


CASES = {
    "arcface": (L.ArcFaceLoss, {"margin": 0.5, "scale": 16.0}, 1, arcface_ref),
    "arcface_easy": (
        L.ArcFaceLoss,
        {"margin": 0.3, "scale": 8.0, "easy_margin": True},
        1,
        arcface_ref,
    ),
    "subcenter": (
        L.SubCenterArcFaceLoss,
        {"margin": 0.4, "scale": 10.0, "num_centers": 3},
        3,
        arcface_ref,
    ),
    "cosface": (L.CosFaceLoss, {"margin": 0.35, "scale": 12.0}, 1, cosface_ref),
    "normalized_softmax": (
        L.NormalizedSoftmaxLoss,
        {"temperature": 0.2},
        1,
        normalized_softmax_ref,
    ),
    "proxy_nca": (L.ProxyNCALoss, {"softmax_scale": 3.0}, 1, proxy_nca_ref),
    "proxy_anchor": (L.ProxyAnchorLoss, {"margin": 0.1, "alpha": 16.0}, 1, proxy_anchor_ref),
}


def _make(name, num_classes, dim, vectors=None, **extra):
    cls, kwargs, _, _ = CASES[name]
    loss = cls(num_classes=num_classes, embedding_dim=dim, **{**kwargs, **extra})
    if vectors is not None:
        loss.proxies.set_vectors(vectors.astype("float32"))
    return loss


def _ref(name, x, w, y):
    _, kwargs, centers, ref = CASES[name]
    kwargs = dict(kwargs)
    if centers > 1:
        kwargs["num_centers"] = centers
    return ref(x.astype("float64"), w.astype("float64"), y, **kwargs)


def _data(rng, batch=12, classes=4, dim=5, centers=1):
    w = rng.normal(size=(classes * centers, dim))
    y = rng.integers(0, classes, size=batch).astype("int32")
    x = rng.normal(size=(batch, dim))
    # A few embeddings nearly opposite their own class's first centre: theta_y > pi - m,
    # the ArcFace fallback branch.
    x[:3] = -w[y[:3] * centers] + 0.05 * rng.normal(size=(3, dim))
    return x.astype("float32"), w.astype("float32"), y


# -- values ------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(CASES))
def test_matches_numpy_reference(rng, name):
    centers = CASES[name][2]
    x, w, y = _data(rng, centers=centers)
    loss = _make(name, 4, 5, w)
    got = to_numpy(loss.call(keras.ops.convert_to_tensor(y), keras.ops.convert_to_tensor(x)))
    np.testing.assert_allclose(got, _ref(name, x, w, y), rtol=2e-4, atol=2e-4)
    np.testing.assert_allclose(to_numpy(loss(y, x)), got.mean(), rtol=1e-5)


def test_arcface_fallback_branch_is_exercised(rng):
    # Guards the reference test above: its first rows must sit past pi - m.
    x, w, y = _data(rng)
    cos = [_class_cosines(x[i], w, 4, 1)[y[i]] for i in range(3)]
    assert all(math.acos(c) > math.pi - 0.5 for c in cos)


def test_zero_margins_are_the_normalized_softmax(rng):
    x, w, y = _data(rng)
    scale = 7.0
    plain = to_numpy(_make("normalized_softmax", 4, 5, w, temperature=1.0 / scale)(y, x))
    for name in ("arcface", "cosface"):
        value = to_numpy(_make(name, 4, 5, w, margin=0.0, scale=scale)(y, x))
        np.testing.assert_allclose(value, plain, rtol=1e-5)
    one_center = to_numpy(_make("arcface", 4, 5, w, margin=0.3, scale=scale)(y, x))
    many = np.repeat(w, 2, axis=0)  # two identical sub-centres per class change nothing
    sub = to_numpy(_make("subcenter", 4, 5, many, num_centers=2, margin=0.3, scale=scale)(y, x))
    np.testing.assert_allclose(sub, one_center, rtol=1e-5)


def test_subcenter_gradients_match_arcface_and_split_between_tied_centres(rng):
    # K identical sub-centres: the embedding gradient is ArcFace's, and each sub-centre
    # gets 1/K of ArcFace's proxy gradient (the max's gradient splits between ties).
    x, w, y = _data(rng)
    one = _make("arcface", 4, 5, w, margin=0.3, scale=7.0)
    sub = _make("subcenter", 4, 5, np.repeat(w, 3, axis=0), margin=0.3, scale=7.0)
    grads = []
    for loss in (one, sub):
        _, (grad_x,) = value_and_grad(lambda e, loss=loss: loss(y, e), x)
        _, (grad_w,) = grads_wrt_weights(lambda loss=loss: loss(y, x), [loss.proxies.variable])
        grads.append((grad_x, grad_w))
    (one_x, one_w), (sub_x, sub_w) = grads
    np.testing.assert_allclose(sub_x, one_x, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(sub_w, np.repeat(one_w / 3.0, 3, axis=0), atol=1e-6)


def test_proxy_anchor_ignores_classes_without_positives_and_broadcasts(rng):
    x, w, y = _data(rng, batch=6, classes=6)
    y = np.array([0, 0, 1, 1, 1, 3], "int32")  # classes 2, 4, 5 have no positive
    loss = _make("proxy_anchor", 6, 5, w)
    per_example = to_numpy(
        loss.call(keras.ops.convert_to_tensor(y), keras.ops.convert_to_tensor(x))
    )
    assert per_example.shape == (6,)
    np.testing.assert_allclose(per_example, proxy_anchor_ref(x, w, y, 0.1, 16.0), rtol=2e-4)


# -- angular margins near theta = 0 and theta = pi -----------------------------------------


def _planar(thetas):
    """Embeddings at angle theta from e1 in the (e1, e2) plane of R^3; proxies e1, e3."""
    x = np.stack([np.cos(thetas), np.sin(thetas), np.zeros_like(thetas)], axis=1)
    w = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    return x.astype("float32"), w.astype("float32"), np.zeros(len(thetas), "int32")


@pytest.mark.parametrize("name", ["arcface", "subcenter", "cosface"])
def test_margin_loss_grows_with_the_angle_over_zero_to_pi(name):
    thetas = np.linspace(0.0, math.pi, 361)
    x, w, y = _planar(thetas)
    if name == "subcenter":
        w = np.repeat(w, 3, axis=0)
    loss = _make(name, 2, 3, w, scale=4.0)
    values = to_numpy(loss.call(keras.ops.convert_to_tensor(y), keras.ops.convert_to_tensor(x)))
    steps = np.diff(values)
    # Monotone (no bump at pi - m, where cos(theta + m) would turn back up).
    assert steps.min() > -1e-5, steps.min()
    assert values[-1] > values[0] + 1.0


@pytest.mark.parametrize("name", sorted(CASES))
@pytest.mark.parametrize("theta", [0.0, 1e-4, math.pi - 1e-4, math.pi])
def test_gradients_finite_at_zero_and_pi(name, theta):
    centers = CASES[name][2]
    x, w, y = _planar(np.array([theta, theta]))
    w = np.repeat(w, centers, axis=0)
    loss = _make(name, 2, 3, w)  # the default (large) scales: the hardest case
    value, (grad,) = value_and_grad(lambda e: loss(y, e), x)
    assert np.isfinite(value).all() and np.isfinite(grad).all(), (value, grad)
    _, proxy_grads = grads_wrt_weights(lambda: loss(y, x), [loss.proxies.variable])
    assert np.isfinite(proxy_grads[0]).all()


@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
def test_mixed_precision_computes_in_float32(rng, policy):
    x, w, y = _data(rng)
    keras.mixed_precision.set_global_policy(policy)
    low = keras.ops.cast(x * 40.0, policy.split("_")[1])
    for name in ("arcface", "proxy_anchor", "proxy_nca"):
        loss = _make(name, 4, 5, w)
        value = loss(y, low)
        assert keras.backend.standardize_dtype(value.dtype) == "float32"
        reference = _ref(name, to_numpy(keras.ops.cast(low, "float32")), w, y).mean()
        np.testing.assert_allclose(to_numpy(value), reference, rtol=1e-3)


# -- the dominant-sub-centre filter -------------------------------------------------------


def subcenter_outliers_ref(x, w, y, num_classes, k, threshold):
    outliers, centers = [], np.zeros((num_classes, w.shape[1]))
    dominant = np.zeros(num_classes, int)
    for c in range(num_classes):
        counts = np.zeros(k, int)
        for i in np.flatnonzero(y == c):
            counts[int(np.argmax([_unit(x[i]) @ _unit(w[c * k + j]) for j in range(k)]))] += 1
        dominant[c] = int(np.argmax(counts))
        centers[c] = w[c * k + dominant[c]]
    for i in range(len(x)):
        angle = math.degrees(
            math.acos(np.clip(_unit(x[i]) @ _unit(w[y[i] * k + dominant[y[i]]]), -1, 1))
        )
        if angle > threshold:
            outliers.append(i)
    return np.array(outliers, int), centers


def test_subcenter_outliers_matches_reference(rng):
    w = rng.normal(size=(4 * 3, 6)).astype("float32")
    y = rng.integers(0, 4, size=40).astype("int32")
    x = (w[y * 3 + 1] * 2.0 + rng.normal(size=(40, 6))).astype("float32")  # sub-centre 1 dominates
    loss = L.SubCenterArcFaceLoss(num_classes=4, embedding_dim=6, num_centers=3)
    loss.proxies.set_vectors(w)
    outliers, centers = L.subcenter_outliers(x, y, loss, threshold=40.0)
    want_outliers, want_centers = subcenter_outliers_ref(x, w, y, 4, 3, 40.0)
    np.testing.assert_array_equal(outliers, want_outliers)
    np.testing.assert_allclose(centers, want_centers, rtol=1e-6)
    assert 0 < len(outliers) < 40  # the threshold splits this set


def test_subcenter_outliers_finds_the_planted_outlier():
    # Class 0: sub-centres e1 (dominant: three samples) and e2; one sample along -e1.
    w = np.array([[1, 0, 0], [0, 1, 0], [0, 0, 1], [0, 0, -1]], "float32")
    x = np.array([[1, 0.1, 0], [1, -0.1, 0], [1, 0, 0.1], [-1, 0.05, 0], [0, 0, 1]], "float32")
    y = np.array([0, 0, 0, 0, 1], "int32")
    proxies = layers.Proxies(2, 3, num_centers=2)
    proxies.set_vectors(w)
    outliers, centers = L.subcenter_outliers(x, y, proxies)
    np.testing.assert_array_equal(outliers, [3])
    np.testing.assert_allclose(centers, [[1, 0, 0], [0, 0, 1]])


# -- bad input -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "make, argument",
    [
        (lambda: L.ArcFaceLoss(3, 4, margin=-0.1), "margin"),
        (lambda: L.ArcFaceLoss(3, 4, margin=math.pi / 2), "margin"),
        (lambda: L.ArcFaceLoss(3, 4, margin=28.6), "margin.*radians"),
        (lambda: L.ArcFaceLoss(3, 4, scale=0.0), "scale"),
        (lambda: L.SubCenterArcFaceLoss(3, 4, num_centers=0), "num_centers"),
        (lambda: L.SubCenterArcFaceLoss(3, 4, scale=-1.0), "scale"),
        (lambda: L.CosFaceLoss(3, 4, margin=1.5), "margin"),
        (lambda: L.CosFaceLoss(3, 4, scale=-2.0), "scale"),
        (lambda: L.ProxyAnchorLoss(3, 4, margin=1.0), "margin"),
        (lambda: L.ProxyAnchorLoss(3, 4, alpha=0.0), "alpha"),
        (lambda: L.NormalizedSoftmaxLoss(3, 4, temperature=0.0), "temperature"),
        (lambda: L.ProxyNCALoss(3, 4, softmax_scale=-1.0), "softmax_scale"),
        (lambda: L.ArcFaceLoss(embedding_dim=4), "num_classes"),
        (lambda: L.CosFaceLoss(0, 4), "num_classes"),
        (lambda: L.CosFaceLoss(3, 4, lr_multiplier=0.0), "lr_multiplier"),
        (lambda: L.CosFaceLoss(proxies="proxies"), "proxies"),
        (lambda: L.CosFaceLoss(5, proxies=layers.Proxies(3, 4)), "num_classes"),
        (lambda: L.ArcFaceLoss(proxies=layers.Proxies(3, 4, num_centers=2)), "num_centers"),
    ],
)
def test_bad_arguments_name_the_argument(make, argument):
    with pytest.raises(ValueError, match=argument):
        make()


@pytest.mark.parametrize("name", sorted(CASES))
@pytest.mark.parametrize("bad", [-1, 4])
def test_labels_out_of_range(rng, name, bad):
    x, w, y = _data(rng, centers=CASES[name][2])
    y[5] = bad
    with pytest.raises(ValueError, match=r"y_true.*num_classes=4"):
        _make(name, 4, 5, w)(y, x)


@pytest.mark.tf_only(reason="tf.function graph assertion")
def test_labels_out_of_range_in_a_tensorflow_graph(rng):
    import tensorflow as tf

    x, w, y = _data(rng)
    loss = _make("arcface", 4, 5, w)
    y[0] = 9
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"y_true.*num_classes=4"):
        tf.function(lambda a, b: loss(a, b))(tf.constant(y), tf.constant(x))


def test_bad_embeddings_and_helper_arguments(rng):
    x, w, y = _data(rng)
    loss = _make("cosface", 4, 5, w)
    with pytest.raises(ValueError, match="y_pred.*embedding_dim=5"):
        loss(y, np.zeros((12, 6), "float32"))
    with pytest.raises(ValueError, match="y_pred"):
        loss(y, np.zeros((12, 2, 5), "float32"))
    with pytest.raises(ValueError, match="proxies do not exist"):
        L.CosFaceLoss(4)(y, x)
    with pytest.raises(ValueError, match="threshold"):
        L.subcenter_outliers(x, y, loss, threshold=0.0)
    with pytest.raises(ValueError, match="labels.*num_classes=4"):
        L.subcenter_outliers(x, np.full(12, 7), loss)
    with pytest.raises(ValueError, match="proxies"):
        L.subcenter_outliers(x, y, "loss")


# -- serialization, saving, fit --------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(CASES))
def test_serialization_round_trip(name):
    loss = _make(name, 4, 5)
    clone = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(loss))
    assert type(clone) is type(loss)
    assert clone.get_config() == loss.get_config()
    assert clone.proxies is not loss.proxies  # outside a model load nothing is shared


def _blobs(rng, n=48, classes=3, dim=8):
    y = (np.arange(n) % classes).astype("int32")
    x = rng.normal(size=(n, dim)) + 3.0 * np.eye(dim)[y]
    return x.astype("float32"), y


def _model(loss, dim=8, out=4, attach=False):
    inputs = keras.Input((dim,))
    embeddings = keras.layers.Dense(out)(inputs)
    if attach:
        model = keras.Model(inputs, embeddings)
        model.proxies = loss.proxies
        return model
    return keras.Model(inputs, loss.proxies(embeddings))


@pytest.mark.parametrize("name", sorted(CASES))
def test_fit_learns_and_trains_the_proxies(rng, name):
    x, y = _blobs(rng)
    loss = _make(name, 3, None)  # embedding_dim from the model
    model = _model(loss)
    assert any(v is loss.proxies.variable for v in model.trainable_variables)
    before = to_numpy(loss.proxies.vectors).copy()
    model.compile(optimizer=keras.optimizers.Adam(0.02), loss=loss)
    history = model.fit(x, y, batch_size=16, epochs=4, verbose=0).history["loss"]
    assert np.isfinite(history).all()
    assert history[-1] < 0.8 * history[0], history
    assert np.abs(to_numpy(loss.proxies.vectors) - before).max() > 1e-3
    assert model.predict(x[:5], verbose=0).shape == (5, 4)  # serves the embedding


def test_attached_proxies_are_trained(rng):
    x, y = _blobs(rng)
    loss = L.ArcFaceLoss(num_classes=3, embedding_dim=4, scale=8.0)
    model = _model(loss, attach=True)
    before = to_numpy(loss.proxies.vectors).copy()
    model.compile(optimizer=keras.optimizers.Adam(0.02), loss=loss)
    model.fit(x, y, batch_size=16, epochs=1, verbose=0)
    assert np.abs(to_numpy(loss.proxies.vectors) - before).max() > 1e-3


@pytest.mark.parametrize("name", ["arcface", "proxy_anchor", "subcenter"])
def test_saved_model_keeps_the_trained_proxies_shared_with_the_loss(rng, tmp_path, name):
    x, y = _blobs(rng)
    loss = _make(name, 3, 4)
    model = _model(loss)
    model.compile(optimizer=keras.optimizers.Adam(0.02), loss=loss)
    model.fit(x, y, batch_size=16, epochs=1, verbose=0)
    path = str(tmp_path / f"{name}.keras")
    model.save(path)
    reloaded = keras.saving.load_model(path)
    proxies = reloaded.loss.proxies
    assert type(reloaded.loss) is type(loss)
    assert any(proxies is layer for layer in reloaded.layers)  # one layer, model and loss
    np.testing.assert_allclose(to_numpy(proxies.vectors), to_numpy(loss.proxies.vectors))
    np.testing.assert_allclose(
        reloaded.evaluate(x, y, verbose=0), model.evaluate(x, y, verbose=0), rtol=1e-5
    )
    # Training the reloaded model trains the loss's proxies.
    before = to_numpy(proxies.vectors).copy()
    reloaded.fit(x, y, batch_size=16, epochs=1, verbose=0)
    assert np.abs(to_numpy(proxies.vectors) - before).max() > 1e-4


def test_lr_multiplier_scales_the_adam_step_of_the_proxies(rng):
    x, y = _blobs(rng, n=16)
    w = rng.normal(size=(3, 4)).astype("float32")
    kernel = rng.normal(size=(8, 4)).astype("float32")
    steps = {}
    for k in (1.0, 10.0):
        loss = L.NormalizedSoftmaxLoss(3, 4, temperature=0.5, lr_multiplier=k)
        loss.proxies.set_vectors(w)
        np.testing.assert_allclose(to_numpy(loss.proxies.vectors), w, rtol=1e-6)
        model = _model(loss)
        model.layers[1].set_weights([kernel, np.zeros(4, "float32")])
        model.layers[1].trainable = False
        model.compile(optimizer=keras.optimizers.Adam(1e-3), loss=loss)
        model.train_on_batch(x, y)
        steps[k] = to_numpy(loss.proxies.vectors) - w
    ratio = np.linalg.norm(steps[10.0]) / np.linalg.norm(steps[1.0])
    assert ratio == pytest.approx(10.0, rel=0.02)
