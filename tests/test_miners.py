"""Tests of tfcontrast.miners against plain NumPy loops."""

import keras
import numpy as np
import pytest

from tests import reference
from tfcontrast import distances, miners

# Class 3 is a singleton: anchor 11 has no positive.
LABELS = np.array([0, 0, 0, 1, 1, 1, 1, 2, 2, 0, 2, 3], dtype="int32")
MINING_DISTANCES = ("cosine", "euclidean", "squared_euclidean", "dot")


def _np(x):
    return keras.ops.convert_to_numpy(x)


def _embeddings(rng, n=len(LABELS), dim=8):
    return rng.normal(size=(n, dim)).astype("float32")


# -- BatchAllMiner --------------------------------------------------------------------
def test_batch_all_masks(rng):
    emb = _embeddings(rng)
    mined = miners.BatchAllMiner()(LABELS, emb)
    assert isinstance(mined, miners.PairMask)
    pos, neg = _np(mined.positive), _np(mined.negative)
    assert pos.shape == neg.shape == (12, 12)
    for i in range(12):
        for j in range(12):
            assert pos[i, j] == float(LABELS[i] == LABELS[j] and i != j)
            assert neg[i, j] == float(LABELS[i] != LABELS[j])
    assert pos[11].sum() == 0  # the singleton has no positive


# -- BatchHardMiner -------------------------------------------------------------------
@pytest.mark.parametrize("name", MINING_DISTANCES)
def test_batch_hard_picks_farthest_positive_and_closest_negative(name, rng):
    emb = _embeddings(rng)
    mined = miners.BatchHardMiner()(LABELS, emb, distance=name)
    assert isinstance(mined, miners.Triplets)
    pos, neg, w = _np(mined.positive), _np(mined.negative), _np(mined.weight)
    assert pos.shape == neg.shape == w.shape == (12, 1)
    d = reference.closeness(name, emb)
    for i in range(12):
        p_set = reference.positives_of(LABELS, i)
        n_set = reference.negatives_of(LABELS, i)
        if not p_set or not n_set:
            assert w[i, 0] == 0.0
            continue
        assert w[i, 0] == 1.0
        assert pos[i, 0] in p_set and neg[i, 0] in n_set
        assert pos[i, 0] == max(p_set, key=lambda j, i=i: d[i, j])
        assert neg[i, 0] == min(n_set, key=lambda j, i=i: d[i, j])


def test_no_positive_or_no_negative_gets_weight_zero(rng):
    emb = _embeddings(rng, n=4)
    same = np.zeros(4, "int32")  # no negatives at all
    distinct = np.arange(4, dtype="int32")  # no positives at all
    for miner in (
        miners.BatchHardMiner(),
        miners.SemiHardMiner(),
        miners.SemiHardMiner("all"),
        miners.DistanceWeightedMiner(seed=1),
    ):
        for labels in (same, distinct):
            mined = miner(labels, emb, distance="euclidean")
            np.testing.assert_array_equal(_np(mined.weight), 0.0)
    for labels in (same, distinct):
        mined = miners.MultiSimilarityMiner()(labels, emb)
        np.testing.assert_array_equal(_np(mined.positive), 0.0)
        np.testing.assert_array_equal(_np(mined.negative), 0.0)


# -- SemiHardMiner --------------------------------------------------------------------
@pytest.mark.parametrize("name", MINING_DISTANCES)
def test_semi_hard_hardest_positive(name, rng):
    emb = _embeddings(rng)
    mined = miners.SemiHardMiner()(LABELS, emb, distance=name)
    pos, neg, w = _np(mined.positive), _np(mined.negative), _np(mined.weight)
    assert pos.shape == neg.shape == w.shape == (12, 1)
    d = reference.closeness(name, emb)
    expected = reference.mine_triplets(d, LABELS, "semi_hard")
    for i in range(12):
        if not expected[i]:
            assert w[i, 0] == 0.0
            continue
        assert w[i, 0] == 1.0
        assert (pos[i, 0], neg[i, 0]) == expected[i][0]


@pytest.mark.parametrize("name", MINING_DISTANCES)
def test_semi_hard_all_positives(name, rng):
    emb = _embeddings(rng)
    mined = miners.SemiHardMiner(positives="all")(LABELS, emb, distance=name)
    pos, neg, w = _np(mined.positive), _np(mined.negative), _np(mined.weight)
    assert pos.shape == neg.shape == w.shape == (12, 12)
    d = reference.closeness(name, emb)
    expected = reference.mine_triplets(d, LABELS, "semi_hard_all")
    for i in range(12):
        got = sorted((int(pos[i, k]), int(neg[i, k])) for k in range(12) if w[i, k] > 0)
        assert got == sorted(expected[i])
        for k in range(12):
            if w[i, k] > 0:
                assert pos[i, k] == k


def test_semi_hard_falls_back_to_farthest_negative():
    # Points on a line, Euclidean distance; class 0 at 0 and 10, class 1 at 1 and 2.5.
    # Anchor 0: positive at 10, negatives at 1 and 2.5, none farther than the positive:
    # fallback to the farthest negative (index 3). Anchor 1: positive at 10, negatives
    # at 9 and 7.5: fallback index 2. Anchor 2: positive at 1.5, negatives at 1 and 9:
    # semi-hard index 1. Anchor 3: positive at 1.5, negatives at 2.5 and 7.5: index 0.
    x = np.array([[0.0], [10.0], [1.0], [2.5]], "float32")
    labels = np.array([0, 0, 1, 1], "int32")
    for positives in ("hard", "all"):
        mined = miners.SemiHardMiner(positives)(labels, x, distance="euclidean")
        pos, neg, w = _np(mined.positive), _np(mined.negative), _np(mined.weight)
        triplets = {
            (i, int(pos[i, k]), int(neg[i, k]))
            for i in range(4)
            for k in range(pos.shape[1])
            if w[i, k] > 0
        }
        assert triplets == {(0, 1, 3), (1, 0, 2), (2, 3, 1), (3, 2, 0)}


def test_semi_hard_rejects_bad_positives():
    with pytest.raises(ValueError, match="positives"):
        miners.SemiHardMiner(positives="some")


# -- MultiSimilarityMiner -------------------------------------------------------------
@pytest.mark.parametrize("name", MINING_DISTANCES)
@pytest.mark.parametrize("epsilon", [0.0, 0.1, 0.5])
def test_multi_similarity_conditions(name, epsilon, rng):
    emb = _embeddings(rng)
    mined = miners.MultiSimilarityMiner(epsilon=epsilon)(LABELS, emb, distance=name)
    assert isinstance(mined, miners.PairMask)
    pos, neg = _np(mined.positive), _np(mined.negative)
    sim = reference.similarity(name, emb)
    for i in range(12):
        kp, kn = reference.multi_similarity_pairs(sim, LABELS, i, epsilon=epsilon)
        np.testing.assert_array_equal(np.flatnonzero(pos[i]), kp)
        np.testing.assert_array_equal(np.flatnonzero(neg[i]), kn)
    # The conditions actually select: some pairs kept, some dropped.
    all_pos, all_neg = miners.BatchAllMiner()(LABELS, emb)
    assert 0 < neg.sum() < _np(all_neg).sum() or 0 < pos.sum() < _np(all_pos).sum()


def test_multi_similarity_rejects_negative_epsilon():
    with pytest.raises(ValueError, match="epsilon"):
        miners.MultiSimilarityMiner(epsilon=-0.1)


# -- DistanceWeightedMiner ------------------------------------------------------------
def _unit(x):
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype("float32")


@pytest.mark.parametrize("name", ["cosine", "euclidean"])
def test_distance_weighted_samples_near_negatives(name, rng):
    labels = np.repeat(np.arange(4), 5).astype("int32")
    emb = _unit(rng.normal(size=(20, 6)))
    miner = miners.DistanceWeightedMiner(seed=3)
    d = reference.pairwise("euclidean", emb)
    near_anchors = 0
    for _ in range(3):
        mined = miner(labels, emb, distance=name)
        pos, neg, w = _np(mined.positive), _np(mined.negative), _np(mined.weight)
        assert pos.shape == neg.shape == w.shape == (20, 20)
        for i in range(20):
            p_set = reference.positives_of(labels, i)
            n_set = reference.negatives_of(labels, i)
            near = [n for n in n_set if d[i, n] < miner.nonzero_loss_cutoff]
            # Weight 1 exactly on positive slots, 0 elsewhere.
            np.testing.assert_array_equal(w[i], [float(k in p_set) for k in range(20)])
            np.testing.assert_array_equal(pos[i], np.arange(20))
            allowed = near if near else n_set
            near_anchors += bool(near)
            assert set(neg[i].tolist()) <= set(allowed), (i, neg[i], allowed)
    assert near_anchors > 0


def test_distance_weighted_without_near_negatives_samples_negatives(rng):
    # Two antipodal clusters: every negative is ~2 away, beyond nonzero_loss_cutoff.
    base = np.zeros((1, 4))
    base[0, 0] = 1.0
    noise = 0.01 * rng.normal(size=(6, 4))
    emb = _unit(np.concatenate([base + noise[:3], -base + noise[3:]]))
    labels = np.array([0, 0, 0, 1, 1, 1], "int32")
    mined = miners.DistanceWeightedMiner(seed=0)(labels, emb, distance="euclidean")
    neg, w = _np(mined.negative), _np(mined.weight)
    for i in range(6):
        assert all(labels[n] != labels[i] for n in neg[i])
    assert w.sum() == 6 * 2  # every anchor has 2 positives and some negative


def _on_sphere_at(dist, axis, dim):
    """Unit vector at Euclidean distance `dist` from e_0, tilted towards e_axis."""
    cos = 1.0 - dist**2 / 2.0
    v = np.zeros(dim)
    v[0], v[axis] = cos, np.sqrt(1.0 - cos**2)
    return v


def test_distance_weighted_sampling_distribution():
    """Negatives are drawn with probability proportional to 1 / q(d) (Wu et al. 2017)."""
    dim = 8
    neg_dists = [0.6, 0.9, 1.2, 1.35, 1.6]  # the last is beyond nonzero_loss_cutoff
    anchor = np.eye(dim)[0]
    emb = np.stack(
        [anchor, _on_sphere_at(0.3, 1, dim)]
        + [_on_sphere_at(x, k + 2, dim) for k, x in enumerate(neg_dists)]
    ).astype("float32")
    labels = np.array([0, 0, 1, 1, 1, 1, 1], "int32")
    miner = miners.DistanceWeightedMiner(cutoff=0.5, nonzero_loss_cutoff=1.4, seed=7)
    allowed = np.array(neg_dists[:4])
    q = allowed ** (dim - 2) * (1 - allowed**2 / 4) ** ((dim - 3) / 2)
    expected = (1 / q) / np.sum(1 / q)
    assert expected.max() / expected.min() > 10  # far from uniform: the test can fail
    counts = np.zeros(len(neg_dists))
    for _ in range(200):
        for n in _np(miner(labels, emb, distance="euclidean").negative)[0]:
            counts[int(n) - 2] += 1
    assert counts[-1] == 0
    np.testing.assert_allclose(counts[:4] / counts.sum(), expected, atol=0.03)


@pytest.mark.parametrize("name", ["dot", "squared_euclidean", "manhattan", "kl"])
def test_distance_weighted_rejects_other_distances(name, rng):
    with pytest.raises(ValueError, match="distance"):
        miners.DistanceWeightedMiner()(LABELS, _embeddings(rng), distance=name)


def test_distance_weighted_rejects_bad_cutoffs():
    with pytest.raises(ValueError, match="cutoff"):
        miners.DistanceWeightedMiner(cutoff=0.0)
    with pytest.raises(ValueError, match="nonzero_loss_cutoff"):
        miners.DistanceWeightedMiner(cutoff=1.5, nonzero_loss_cutoff=1.4)


# -- standalone use with references ---------------------------------------------------
def test_references_have_no_self_exclusion(rng):
    emb = _embeddings(rng)
    mined = miners.BatchAllMiner()(LABELS, emb, ref_labels=LABELS, ref_embeddings=emb)
    pos = _np(mined.positive)
    np.testing.assert_array_equal(np.diag(pos), 1.0)
    # Batch-hard against the batch as references: the anchor itself is a positive at
    # distance 0, so the singleton anchor now has one.
    hard = miners.BatchHardMiner()(
        LABELS, emb, ref_labels=LABELS, ref_embeddings=emb, distance="euclidean"
    )
    assert _np(hard.weight)[11, 0] == 1.0 and _np(hard.positive)[11, 0] == 11


@pytest.mark.parametrize("name", MINING_DISTANCES)
def test_references_of_another_size(name, rng):
    emb = _embeddings(rng, n=5)
    labels = np.array([0, 1, 2, 0, 1], "int32")
    ref = _embeddings(rng, n=9)
    ref_labels = np.array([0, 0, 1, 1, 2, 2, 3, 3, 0], "int32")
    d = reference.closeness(name, emb, ref)
    all_pairs = miners.BatchAllMiner()(labels, emb, ref_labels, ref, distance=name)
    assert _np(all_pairs.positive).shape == (5, 9)
    hard = miners.BatchHardMiner()(labels, emb, ref_labels, ref, distance=name)
    pos, neg = _np(hard.positive)[:, 0], _np(hard.negative)[:, 0]
    for i in range(5):
        p_set = reference.positives_of(labels, i, ref_labels, exclude_self=False)
        n_set = reference.negatives_of(labels, i, ref_labels)
        np.testing.assert_array_equal(np.flatnonzero(_np(all_pairs.positive)[i]), p_set)
        assert pos[i] == max(p_set, key=lambda j, i=i: d[i, j])
        assert neg[i] == min(n_set, key=lambda j, i=i: d[i, j])


def test_ref_embeddings_without_ref_labels_raises(rng):
    emb = _embeddings(rng)
    with pytest.raises(ValueError, match="ref_labels"):
        miners.BatchHardMiner()(LABELS, emb, ref_embeddings=emb)


def test_triplets_to_pairs(rng):
    emb = _embeddings(rng)
    triplets = miners.BatchHardMiner()(LABELS, emb, distance="euclidean")
    pairs = miners.triplets_to_pairs(triplets, 12)
    pos, neg = _np(pairs.positive), _np(pairs.negative)
    for i in range(12):
        w = _np(triplets.weight)[i, 0]
        expected_pos = np.zeros(12)
        expected_neg = np.zeros(12)
        if w:
            expected_pos[_np(triplets.positive)[i, 0]] = 1
            expected_neg[_np(triplets.negative)[i, 0]] = 1
        np.testing.assert_array_equal(pos[i], expected_pos)
        np.testing.assert_array_equal(neg[i], expected_neg)


# -- get / serialization --------------------------------------------------------------
@pytest.mark.parametrize(
    "alias, cls",
    [
        ("all", miners.BatchAllMiner),
        ("batch_all", miners.BatchAllMiner),
        ("hard", miners.BatchHardMiner),
        ("batch_hard", miners.BatchHardMiner),
        ("semi_hard", miners.SemiHardMiner),
        ("semi-hard", miners.SemiHardMiner),
        ("SemiHard", miners.SemiHardMiner),
        ("multi_similarity", miners.MultiSimilarityMiner),
        ("ms", miners.MultiSimilarityMiner),
        ("distance_weighted", miners.DistanceWeightedMiner),
    ],
)
def test_get_names_and_aliases(alias, cls):
    assert type(miners.get(alias)) is cls


def test_get_none_objects_and_dicts():
    assert miners.get(None) is None
    m = miners.SemiHardMiner("all")
    assert miners.get(m) is m
    again = miners.get(miners.serialize(m))
    assert type(again) is miners.SemiHardMiner and again.positives == "all"
    assert miners.serialize(None) is None
    assert miners.names() == sorted(
        ["all", "hard", "semi_hard", "multi_similarity", "distance_weighted"]
    )


@pytest.mark.parametrize("bad", ["hardest", "", 7, ["hard"]])
def test_get_unknown_raises_listing_names(bad):
    with pytest.raises(ValueError, match="miner") as info:
        miners.get(bad)
    for name in miners.names():
        assert name in str(info.value)


@pytest.mark.parametrize(
    "miner",
    [
        miners.BatchAllMiner(),
        miners.BatchHardMiner(),
        miners.SemiHardMiner("all"),
        miners.MultiSimilarityMiner(epsilon=0.25),
        miners.DistanceWeightedMiner(cutoff=0.3, nonzero_loss_cutoff=1.2, seed=5),
    ],
    ids=lambda m: type(m).__name__,
)
def test_serialization_round_trip(miner):
    config = keras.saving.serialize_keras_object(miner)
    again = keras.saving.deserialize_keras_object(config)
    assert type(again) is type(miner)
    assert again.get_config() == miner.get_config()
    assert repr(again) == repr(miner)


def test_miners_accept_distance_objects(rng):
    emb = _embeddings(rng)
    a = miners.BatchHardMiner()(LABELS, emb, distance=distances.EuclideanDistance())
    b = miners.BatchHardMiner()(LABELS, emb, distance="l2")
    np.testing.assert_array_equal(_np(a.positive), _np(b.positive))
    with pytest.raises(ValueError, match="distance"):
        miners.BatchHardMiner()(LABELS, emb, distance="nope")
