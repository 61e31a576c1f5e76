"""Algorithms that `ContrastiveModel` runs, one module each, registered by name."""

from tfcontrast.models.algorithms.barlow_twins import BarlowTwins
from tfcontrast.models.algorithms.base import (
    Algorithm,
    OptionError,
    get,
    get_class,
    multi_crop_names,
    names,
    register,
)
from tfcontrast.models.algorithms.byol import BYOL
from tfcontrast.models.algorithms.dino import DINO
from tfcontrast.models.algorithms.metric import Metric
from tfcontrast.models.algorithms.moco import MoCoV2, MoCoV3
from tfcontrast.models.algorithms.nnclr import NNCLR
from tfcontrast.models.algorithms.simclr import SimCLR
from tfcontrast.models.algorithms.simsiam import SimSiam
from tfcontrast.models.algorithms.supcon import SupCon
from tfcontrast.models.algorithms.swav import SwAV
from tfcontrast.models.algorithms.vicreg import VICReg

__all__ = [
    "Algorithm",
    "BYOL",
    "BarlowTwins",
    "DINO",
    "Metric",
    "MoCoV2",
    "MoCoV3",
    "NNCLR",
    "OptionError",
    "SimCLR",
    "SimSiam",
    "SupCon",
    "SwAV",
    "VICReg",
    "get",
    "get_class",
    "multi_crop_names",
    "names",
    "register",
]
