"""Multi-hot labels `(B, C)`: positives share at least one label, negatives none."""

import keras
import numpy as np
import pytest

from tests import reference
from tfcontrast import miners
from tfcontrast._masking import pair_masks
from tfcontrast.losses import (
    ArcFaceLoss,
    CircleLoss,
    ContrastiveLoss,
    MultiSimilarityLoss,
    SoftNearestNeighborLoss,
    TripletLoss,
)

# Rows: two labels (0 and 2), one label, no label at all (row 9: never a positive).
MULTI_HOT = np.array(
    [
        [1, 0, 1, 0],
        [1, 0, 0, 0],
        [0, 1, 0, 0],
        [0, 1, 1, 0],
        [0, 0, 1, 0],
        [0, 1, 0, 0],
        [1, 1, 0, 0],
        [0, 0, 0, 1],
        [0, 0, 0, 1],
        [0, 0, 0, 0],
        [1, 0, 0, 0],
        [0, 0, 1, 1],
    ],
    dtype="int32",
)


def _np(x):
    return keras.ops.convert_to_numpy(x)


@pytest.fixture
def emb():
    return (0.3 * np.random.default_rng(5).normal(size=(len(MULTI_HOT), 6))).astype("float32")


def test_pair_masks_follow_shared_labels():
    positive, negative = (_np(m) for m in pair_masks(MULTI_HOT, MULTI_HOT, 0))
    n = len(MULTI_HOT)
    for i in range(n):
        for j in range(n):
            shared = bool(np.any(MULTI_HOT[i] & MULTI_HOT[j]))
            assert positive[i, j] == float(shared and i != j), (i, j)
            assert negative[i, j] == float(not shared and i != j), (i, j)
    # Disjoint references (offset None): the anchor may meet itself as a positive.
    positive, _ = (_np(m) for m in pair_masks(MULTI_HOT, MULTI_HOT, None))
    assert positive[0, 0] == 1.0 and positive[9, 9] == 0.0


@pytest.mark.parametrize("miner", [None, "hard", "semi_hard"])
@pytest.mark.parametrize("loss_name", ["contrastive", "triplet"])
def test_pair_losses_match_the_reference(loss_name, miner, emb):
    rows = list(MULTI_HOT)
    d = reference.closeness("cosine", emb)
    if loss_name == "contrastive":
        loss = ContrastiveLoss(margin=0.7, distance="cosine", miner=miner, reduction=None)
        expected = reference.contrastive_loss(d, rows, 0.7, miner)
    else:
        loss = TripletLoss(margin=0.3, distance="cosine", miner=miner or "all", reduction=None)
        expected = reference.triplet_loss(d, rows, 0.3, miner or "all")
    got = _np(loss(MULTI_HOT, emb))
    np.testing.assert_allclose(got, expected, rtol=2e-4, atol=2e-5)
    assert np.count_nonzero(expected) > 0


def test_one_hot_rows_equal_integer_labels(emb):
    labels = np.array([0, 1, 2, 0, 1, 2, 3, 3, 0, 1, 2, 3])
    one_hot = np.eye(4, dtype="int32")[labels]
    for loss in (
        MultiSimilarityLoss(reduction=None),
        CircleLoss(reduction=None),
        TripletLoss(miner="semi_hard", reduction=None),
    ):
        np.testing.assert_allclose(
            _np(loss(one_hot, emb)), _np(loss(labels, emb)), rtol=1e-5, atol=1e-6
        )
    mined = miners.BatchHardMiner()(one_hot, emb)
    expected = miners.BatchHardMiner()(labels, emb)
    np.testing.assert_array_equal(_np(mined.positive), _np(expected.positive))


def test_losses_without_multi_label_support_say_so(emb):
    for loss in (SoftNearestNeighborLoss(), ArcFaceLoss(num_classes=4, embedding_dim=6)):
        with pytest.raises(ValueError, match=r"shape \(batch,\)"):
            loss(MULTI_HOT, emb)
    with pytest.raises(ValueError, match="multi-hot.*0 or 1"):
        TripletLoss()(2 * MULTI_HOT, emb)
