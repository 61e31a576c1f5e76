"""Miners: choose the informative pairs and triplets of a batch.

A miner looks at a matrix of anchor-to-reference distances and the label masks and
returns one of two results, which every loss in `tfcontrast.losses` consumes:

- `PairMask(positive, negative)`: float masks of shape `(B, M)`, 1 for a mined pair.
  Pair miners: `BatchAllMiner`, `MultiSimilarityMiner`.
- `Triplets(positive, negative, weight)`: int32 reference indices of shape `(B, K)`,
  `K` triplets per anchor (anchor `i` is row `i`), and a float weight that is 0 for an
  invalid slot (an anchor with no positive or no negative). Triplet miners:
  `BatchHardMiner`, `SemiHardMiner`, `DistanceWeightedMiner`.

Shapes are static, so miners run under `jit_compile` and on every Keras backend.

Used on their own:

```python
import numpy as np
from tfcontrast import miners

labels = np.array([0, 0, 1, 1])
emb = np.random.rand(4, 16).astype("float32")
triplets = miners.BatchHardMiner()(labels, emb, distance="euclidean")
triplets.positive  # (4, 1): index of each anchor's hardest positive
```

Used by a loss: `TripletLoss(miner="semi_hard")` or `TripletLoss(miner=SemiHardMiner())`.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import keras
from keras import ops

from tfcontrast import _checks
from tfcontrast import distances as distances_lib
from tfcontrast._masking import masked_max, masked_min, pair_masks
from tfcontrast._registry import resolve


class PairMask(NamedTuple):
    """Mined pairs: float32 masks `(B, M)` of positive and negative pairs."""

    positive: Any
    negative: Any


class Triplets(NamedTuple):
    """Mined triplets, `K` per anchor: reference indices `(B, K)` and weights `(B, K)`."""

    positive: Any
    negative: Any
    weight: Any


def triplets_to_pairs(triplets: Triplets, num_refs: int) -> PairMask:
    """The pairs used by `triplets`, for losses that consume pairs."""
    weight = triplets.weight[..., None]
    positive = ops.max(ops.one_hot(triplets.positive, num_refs) * weight, axis=1)
    negative = ops.max(ops.one_hot(triplets.negative, num_refs) * weight, axis=1)
    return PairMask(positive, negative)


class Miner:
    """Base class of miners.

    Subclasses implement `mine(matrix, positive, negative, distance, embedding_dim)`,
    where `matrix` is the `(B, M)` output of `distance`, `positive` / `negative` are the
    float label masks and `embedding_dim` is `D`. Calling a miner computes those from
    labels and embeddings.
    """

    name = ""

    def __call__(self, labels, embeddings, ref_labels=None, ref_embeddings=None, distance="cosine"):
        """Mines a batch.

        Args:
            labels: integer labels `(B,)`.
            embeddings: `(B, D)` anchors.
            ref_labels, ref_embeddings: optional references `(M,)`, `(M, D)`; by default
                the batch itself (then an anchor is never its own positive).
            distance: a distance name or `tfcontrast.distances.Distance`.
        """
        distance = distances_lib.get(distance)
        labels = ops.convert_to_tensor(labels)
        embeddings = ops.cast(ops.convert_to_tensor(embeddings), "float32")
        if ref_embeddings is None:
            ref_labels, ref_embeddings, offset = labels, embeddings, 0
        else:
            if ref_labels is None:
                raise ValueError("`ref_labels` is required when `ref_embeddings` is given.")
            ref_labels = ops.convert_to_tensor(ref_labels)
            ref_embeddings = ops.cast(ops.convert_to_tensor(ref_embeddings), "float32")
            offset = None
        matrix = distance(embeddings, ref_embeddings)
        positive, negative = pair_masks(labels, ref_labels, offset)
        return self.mine(matrix, positive, negative, distance, embedding_dim=embeddings.shape[-1])

    def mine(self, matrix, positive, negative, distance, embedding_dim=None) -> PairMask | Triplets:
        raise NotImplementedError

    def get_config(self) -> dict:
        return {}

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"


def _closeness(matrix, distance):
    """Distances oriented smaller-is-closer, cut from the gradient (mining selects)."""
    return ops.stop_gradient(distance.to_distance(matrix))


@keras.saving.register_keras_serializable(package="tfcontrast")
class BatchAllMiner(Miner):
    """Every valid positive and negative pair; a triplet loss forms all triplets."""

    name = "all"

    def mine(self, matrix, positive, negative, distance, embedding_dim=None):
        return PairMask(positive, negative)


@keras.saving.register_keras_serializable(package="tfcontrast")
class BatchHardMiner(Miner):
    """Hardest positive (farthest) and hardest negative (closest) per anchor.

    Hermans, Beyer & Leibe, "In Defense of the Triplet Loss for Person
    Re-Identification", 2017. One triplet per anchor (`K = 1`).
    """

    name = "hard"

    def mine(self, matrix, positive, negative, distance, embedding_dim=None):
        d = _closeness(matrix, distance)
        low = ops.min(d) - 1.0
        high = ops.max(d) + 1.0
        pos = ops.argmax(ops.where(positive > 0, d, low), axis=1)
        neg = ops.argmin(ops.where(negative > 0, d, high), axis=1)
        valid = ops.max(positive, axis=1) * ops.max(negative, axis=1)
        return Triplets(
            ops.cast(pos, "int32")[:, None], ops.cast(neg, "int32")[:, None], valid[:, None]
        )


@keras.saving.register_keras_serializable(package="tfcontrast")
class SemiHardMiner(Miner):
    """Semi-hard negatives (FaceNet): the closest negative farther than the positive.

    Schroff, Kalenichenko & Philbin, "FaceNet", 2015. For a positive at distance
    `d_ap` the miner picks the negative `n` minimising `d_an` subject to `d_an > d_ap`;
    when no negative is that far, it falls back to the farthest negative.

    Args:
        positives: `"hard"` (default) takes each anchor's farthest positive, one triplet
            per anchor, in `O(B M)` memory, as TensorFlow Similarity does. `"all"` takes
            every anchor-positive pair as in the FaceNet paper, `K = M` triplets per
            anchor, in `O(B M^2)` memory.
    """

    name = "semi_hard"

    def __init__(self, positives: str = "hard"):
        if positives not in ("hard", "all"):
            raise ValueError(
                f"SemiHardMiner: `positives` must be 'hard' or 'all'; received {positives!r}."
            )
        self.positives = positives

    def mine(self, matrix, positive, negative, distance, embedding_dim=None):
        d = _closeness(matrix, distance)
        has_neg = ops.max(negative, axis=1)
        # Fallback: the farthest negative.
        farthest = ops.cast(
            ops.argmax(ops.where(negative > 0, d, ops.min(d) - 1.0), axis=1), "int32"
        )
        if self.positives == "hard":
            pos = ops.cast(
                ops.argmax(ops.where(positive > 0, d, ops.min(d) - 1.0), axis=1), "int32"
            )[:, None]
            d_ap = ops.take_along_axis(d, pos, axis=1)  # (B, 1)
            candidates = negative[:, None, :] * ops.cast(
                d[:, None, :] > d_ap[:, :, None], "float32"
            )  # (B, 1, M)
            weight = (ops.max(positive, axis=1) * has_neg)[:, None]
        else:
            num_refs = ops.shape(d)[1]
            pos = ops.broadcast_to(ops.arange(num_refs, dtype="int32")[None, :], ops.shape(d))
            candidates = negative[:, None, :] * ops.cast(
                d[:, None, :] > d[:, :, None], "float32"
            )  # (B, M, M)
            weight = positive * has_neg[:, None]
        high = ops.max(d) + 1.0
        closest = ops.cast(
            ops.argmin(ops.where(candidates > 0, d[:, None, :], high), axis=2), "int32"
        )
        found = ops.max(candidates, axis=2) > 0
        neg = ops.where(found, closest, farthest[:, None])
        return Triplets(pos, neg, weight)

    def get_config(self):
        return {"positives": self.positives}


@keras.saving.register_keras_serializable(package="tfcontrast")
class MultiSimilarityMiner(Miner):
    """Multi-similarity pair mining (Wang et al., CVPR 2019).

    With similarities `s` (larger is closer), a negative pair is kept when
    `s_an + epsilon > min_p s_ap` and a positive pair when `s_ap - epsilon < max_n s_an`.

    Args:
        epsilon: the margin of the two conditions (0.1 in the paper).
    """

    name = "multi_similarity"

    def __init__(self, epsilon: float = 0.1):
        self.epsilon = _checks.non_negative("epsilon", epsilon, "MultiSimilarityMiner")

    def mine(self, matrix, positive, negative, distance, embedding_dim=None):
        s = ops.stop_gradient(distance.to_similarity(matrix))
        hardest_pos = masked_min(s, positive, axis=1)[:, None]
        hardest_neg = masked_max(s, negative, axis=1)[:, None]
        has_pos = ops.max(positive, axis=1, keepdims=True)
        has_neg = ops.max(negative, axis=1, keepdims=True)
        keep_neg = negative * ops.cast(s + self.epsilon > hardest_pos, "float32") * has_pos
        keep_pos = positive * ops.cast(s - self.epsilon < hardest_neg, "float32") * has_neg
        return PairMask(keep_pos, keep_neg)

    def get_config(self):
        return {"epsilon": self.epsilon}


@keras.saving.register_keras_serializable(package="tfcontrast")
class DistanceWeightedMiner(Miner):
    """Distance-weighted negative sampling (Wu et al., "Sampling Matters", 2017).

    For every anchor-positive pair one negative is sampled with probability
    proportional to `1 / q(d)`, where `q(d) ~ d^(n-2) (1 - d^2/4)^((n-3)/2)` is the
    density of distances between points uniform on the unit sphere in `n` dimensions.
    Distances are clipped below at `cutoff`, and negatives farther than
    `nonzero_loss_cutoff` are never sampled.

    It needs Euclidean distances between unit vectors: use it with
    `distance="cosine"` (converted with `d = sqrt(2 * cosine_distance)`) or with
    `"euclidean"` on L2-normalised embeddings. `K = M` triplets per anchor.

    Args:
        cutoff: lower clip of the distance (0.5 in the paper).
        nonzero_loss_cutoff: largest distance of a sampled negative (1.4).
        seed: seed of the sampler.
    """

    name = "distance_weighted"

    def __init__(self, cutoff: float = 0.5, nonzero_loss_cutoff: float = 1.4, seed=None):
        if not 0.0 < float(cutoff) < float(nonzero_loss_cutoff):
            raise ValueError(
                "DistanceWeightedMiner: expected 0 < `cutoff` < `nonzero_loss_cutoff`; "
                f"received cutoff={cutoff!r}, nonzero_loss_cutoff={nonzero_loss_cutoff!r}."
            )
        self.cutoff = float(cutoff)
        self.nonzero_loss_cutoff = float(nonzero_loss_cutoff)
        self.seed = seed
        self._seed_generator = keras.random.SeedGenerator(seed)

    def _unit_sphere_distance(self, matrix, distance):
        if isinstance(distance, distances_lib.CosineDistance):
            return ops.sqrt(ops.maximum(2.0 * matrix, 1e-12))
        if isinstance(distance, distances_lib.EuclideanDistance):
            return matrix
        raise ValueError(
            "DistanceWeightedMiner: `distance` must be 'cosine' or 'euclidean' (on unit "
            f"vectors); received {distance.name!r}."
        )

    def mine(self, matrix, positive, negative, distance, embedding_dim=None):
        if embedding_dim is None:
            raise ValueError("DistanceWeightedMiner needs the embedding dimension.")
        n = float(embedding_dim)
        d = ops.stop_gradient(self._unit_sphere_distance(matrix, distance))
        d = ops.clip(d, self.cutoff, 1.99)
        # -log q(d), in log space: q(d) underflows in float32 for large dimensions.
        logits = -((n - 2.0) * ops.log(d) + 0.5 * (n - 3.0) * ops.log(1.0 - 0.25 * ops.square(d)))
        near = negative * ops.cast(d < self.nonzero_loss_cutoff, "float32")
        # An anchor with no negative inside the cutoff samples uniformly among negatives.
        has_near = ops.max(near, axis=1, keepdims=True) > 0
        allowed = ops.where(has_near, near, negative)
        # Non-finite distances (NaN inputs) are never sampled: a row of them would make
        # the sampler return an index out of range; the loss itself becomes NaN.
        usable = ops.logical_and(allowed > 0, ops.isfinite(logits))
        logits = ops.where(usable, logits, ops.full_like(logits, -1e9))
        logits = logits - ops.max(logits, axis=1, keepdims=True)
        num_refs = ops.shape(matrix)[1]
        neg = ops.cast(
            keras.random.categorical(logits, num_refs, seed=self._seed_generator), "int32"
        )
        pos = ops.broadcast_to(ops.arange(num_refs, dtype="int32")[None, :], ops.shape(neg))
        weight = positive * ops.max(negative, axis=1, keepdims=True)
        return Triplets(pos, neg, weight)

    def get_config(self):
        return {
            "cutoff": self.cutoff,
            "nonzero_loss_cutoff": self.nonzero_loss_cutoff,
            "seed": self.seed,
        }


_REGISTRY = {
    cls.name: cls
    for cls in (
        BatchAllMiner,
        BatchHardMiner,
        SemiHardMiner,
        MultiSimilarityMiner,
        DistanceWeightedMiner,
    )
}
_ALIASES = {
    "batch_all": "all",
    "batch_hard": "hard",
    "semi-hard": "semi_hard",
    "semihard": "semi_hard",
    "ms": "multi_similarity",
}


def names() -> list[str]:
    """The valid miner names accepted by `get`."""
    return sorted(_REGISTRY)


def get(identifier: str | Miner | dict | None) -> Miner | None:
    """Resolves a miner name, config dict or object (`None` passes through).

    Raises:
        ValueError: for an unknown name; the message lists the valid names.
    """
    if identifier is None:
        return None
    return resolve(identifier, base=Miner, registry=_REGISTRY, aliases=_ALIASES, argument="miner")


def serialize(miner: Miner | None):
    return None if miner is None else keras.saving.serialize_keras_object(miner)
