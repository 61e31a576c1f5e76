"""Losses for metric and contrastive learning, as `keras.losses.Loss` subclasses.

Every loss returns per-example values so that Keras reduces them, applies
`sample_weight` and scales them correctly under `tf.distribute`.
"""

from tfcontrast.losses.base import ContrastiveLossBase, MetricLoss
from tfcontrast.losses.clustering import (
    DINOLoss,
    SwAVLoss,
    sinkhorn_knopp,
    teacher_probabilities,
    teacher_temperature,
    updated_center,
)
from tfcontrast.losses.distillation import NegativeCosineSimilarity
from tfcontrast.losses.infonce import (
    CLIPLoss,
    DCLLoss,
    DCLWLoss,
    InfoNCELoss,
    MultiViewContrastiveLoss,
    MutualInformationBound,
    NCELoss,
    NTXentLoss,
    SigLIPLoss,
    SupConLoss,
)
from tfcontrast.losses.memory import CrossBatchMemory
from tfcontrast.losses.pairs import ContrastiveLoss, MiningLoss, TripletLoss
from tfcontrast.losses.proxies import (
    ArcFaceLoss,
    CosFaceLoss,
    NormalizedSoftmaxLoss,
    ProxyAnchorLoss,
    ProxyLoss,
    ProxyNCALoss,
    SubCenterArcFaceLoss,
    subcenter_outliers,
)
from tfcontrast.losses.redundancy import BarlowTwinsLoss, VICRegLoss
from tfcontrast.losses.structured import (
    CircleLoss,
    LiftedStructureLoss,
    MultiSimilarityLoss,
    NPairLoss,
    SoftNearestNeighborLoss,
)

__all__ = [
    "BarlowTwinsLoss",
    "CrossBatchMemory",
    "DINOLoss",
    "SwAVLoss",
    "NegativeCosineSimilarity",
    "VICRegLoss",
    "CLIPLoss",
    "DCLLoss",
    "DCLWLoss",
    "InfoNCELoss",
    "MultiViewContrastiveLoss",
    "MutualInformationBound",
    "NCELoss",
    "NTXentLoss",
    "SigLIPLoss",
    "SupConLoss",
    "CircleLoss",
    "LiftedStructureLoss",
    "MultiSimilarityLoss",
    "NPairLoss",
    "SoftNearestNeighborLoss",
    "ContrastiveLoss",
    "ContrastiveLossBase",
    "MetricLoss",
    "MiningLoss",
    "TripletLoss",
    "ArcFaceLoss",
    "CosFaceLoss",
    "NormalizedSoftmaxLoss",
    "ProxyAnchorLoss",
    "ProxyLoss",
    "ProxyNCALoss",
    "SubCenterArcFaceLoss",
    "sinkhorn_knopp",
    "subcenter_outliers",
    "teacher_probabilities",
    "teacher_temperature",
    "updated_center",
]
