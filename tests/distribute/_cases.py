"""Names of the distributed test cases, shared by the tests and their subprocesses.

Kept free of TensorFlow imports: the pytest process must not configure devices.
"""

REPLICAS = (2, 4)

LOSS_NAMES = (
    "nt_xent",
    "nt_xent_3views",
    "info_nce",
    "info_nce_queue",
    "nce",
    "dcl",
    "dclw",
    "clip_learnable",
    "siglip",
    "cmc",
    "supcon",
    "supcon_views",
    "contrastive",
    "contrastive_ms_miner",
    "triplet_hard",
    "triplet_semi_hard",
    "triplet_all",
    "triplet_soft_hard",
    "npair",
    "lifted_structure",
    "circle",
    "multi_similarity",
    "soft_nearest_neighbor",
    "cross_batch_memory",
    "vicreg",
    "vicreg_3views",
    "barlow_twins",
    "negative_cosine",
)

# Losses re-run with the gather switched off: their distributed value must then differ
# from one device, which shows the comparison can fail.
LOCAL_ONLY = ("nt_xent", "supcon", "triplet_hard", "vicreg", "barlow_twins")

# Losses also checked on an uneven split of a batch of 7 (2, 2, 2, 1 rows on 4 replicas).
UNEVEN = ("nt_xent", "supcon", "triplet_semi_hard", "vicreg")

ALGORITHMS = (
    "simclr",
    "supcon",
    "moco_v2",
    "moco_v3",
    "byol",
    "simsiam",
    "vicreg",
    "barlow_twins",
    "nnclr",
    "dino",
    "swav",
)
