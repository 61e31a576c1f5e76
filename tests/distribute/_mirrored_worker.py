"""Subprocess body of the MirroredStrategy tests (not collected by pytest).

TensorFlow fixes the logical devices when it initialises, so the pytest process (which
other test files share under xdist) cannot be split into several CPUs. This script runs
in its own process: it configures 4 logical CPUs, builds `MirroredStrategy` over the
first 2 and over all 4, and compares every distributed computation with the same
computation on one device, on the same global batch. It writes a JSON report that
`test_mirrored.py` asserts on.

    python _mirrored_worker.py losses OUT.json
    python _mirrored_worker.py models OUT.json
"""

from __future__ import annotations

import json
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import tensorflow as tf  # noqa: E402

_CPU = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(_CPU, [tf.config.LogicalDeviceConfiguration()] * 4)
# Grappler spends most of this script's time rewriting the large test graphs, and the
# comparisons do not need it.
tf.config.optimizer.set_experimental_options({"disable_meta_optimizer": True})

import keras  # noqa: E402
import numpy as np  # noqa: E402
from _cases import ALGORITHMS, LOCAL_ONLY, LOSS_NAMES, REPLICAS, UNEVEN  # noqa: E402

from tfcontrast import distribute, losses  # noqa: E402
from tfcontrast.layers import MemoryQueue  # noqa: E402

GLOBAL_BATCH = 8
START = time.time()
DIM_IN, DIM = 6, 5


def strategies():
    """`MirroredStrategy` over the first 2 and over all 4 logical CPUs."""
    devices = [d.name for d in tf.config.list_logical_devices("CPU")]
    made = {}
    for n in REPLICAS:
        # Two strategies sharing devices in one process would reuse collective group
        # keys; TF's own tests shift the key base the same way
        # (tensorflow/python/distribute/strategy_combinations.py).
        tf.distribute.MirroredStrategy._collective_key_base += 100000
        made[n] = tf.distribute.MirroredStrategy(devices[:n])
    return made


# -- losses ----------------------------------------------------------------------------

# name -> (factory, input kind). Kinds: "views2"/"views3" are (B, V, D) without labels,
# "labels" is (B, D) with labels, "labels_views" is (B, 2, D) with labels.
LOSSES = {
    "nt_xent": (lambda: losses.NTXentLoss(temperature=0.5), "views2"),
    "nt_xent_3views": (lambda: losses.NTXentLoss(temperature=0.5), "views3"),
    "info_nce": (lambda: losses.InfoNCELoss(temperature=0.5), "views2"),
    "info_nce_queue": (
        lambda: losses.InfoNCELoss(temperature=0.5, queue=MemoryQueue(12, DIM)),
        "views2",
    ),
    "nce": (lambda: losses.NCELoss(temperature=0.5), "views2"),
    "dcl": (lambda: losses.DCLLoss(temperature=0.5), "views2"),
    "dclw": (lambda: losses.DCLWLoss(temperature=0.5), "views3"),
    "clip_learnable": (
        lambda: losses.CLIPLoss(temperature=0.5, learnable_temperature=True),
        "views2",
    ),
    "siglip": (lambda: losses.SigLIPLoss(init_scale=2.0, init_bias=-1.0), "views2"),
    "cmc": (lambda: losses.MultiViewContrastiveLoss(temperature=0.5), "views3"),
    "supcon": (lambda: losses.SupConLoss(temperature=0.5), "labels"),
    "supcon_views": (lambda: losses.SupConLoss(temperature=0.5), "labels_views"),
    "contrastive": (lambda: losses.ContrastiveLoss(margin=1.0), "labels"),
    "contrastive_ms_miner": (
        lambda: losses.ContrastiveLoss(margin=1.0, miner="multi_similarity"),
        "labels",
    ),
    "triplet_hard": (lambda: losses.TripletLoss(miner="hard"), "labels"),
    "triplet_semi_hard": (lambda: losses.TripletLoss(miner="semi_hard"), "labels"),
    "triplet_all": (lambda: losses.TripletLoss(miner="all"), "labels"),
    "triplet_soft_hard": (
        lambda: losses.TripletLoss(soft_margin=True, miner="hard", distance="euclidean"),
        "labels",
    ),
    "npair": (lambda: losses.NPairLoss(l2_reg=0.01), "labels"),
    "lifted_structure": (lambda: losses.LiftedStructureLoss(), "labels"),
    "circle": (lambda: losses.CircleLoss(), "labels"),
    "multi_similarity": (lambda: losses.MultiSimilarityLoss(), "labels"),
    "soft_nearest_neighbor": (
        lambda: losses.SoftNearestNeighborLoss(temperature=0.5, learnable_temperature=True),
        "labels",
    ),
    "cross_batch_memory": (
        lambda: losses.CrossBatchMemory(
            losses.ContrastiveLoss(margin=1.0), memory_size=12, embedding_dim=DIM
        ),
        "labels",
    ),
    "vicreg": (lambda: losses.VICRegLoss(), "views2"),
    "vicreg_3views": (lambda: losses.VICRegLoss(), "views3"),
    "barlow_twins": (lambda: losses.BarlowTwinsLoss(lambda_=0.05), "views2"),
    "negative_cosine": (lambda: losses.NegativeCosineSimilarity(), "views2"),
}

assert tuple(LOSSES) == LOSS_NAMES


def make_inputs(seed, batch=GLOBAL_BATCH):
    rng = np.random.default_rng(seed)
    labels = np.array([0, 1, 2, 0, 1, 2, 0, 1, 2, 0, 1, 2][:batch], dtype="int32")
    return {
        "views2": rng.normal(size=(batch, 2, DIM_IN)).astype("float32"),
        "views3": rng.normal(size=(batch, 3, DIM_IN)).astype("float32"),
        "labels": rng.normal(size=(batch, DIM_IN)).astype("float32"),
        "labels_views": rng.normal(size=(batch, 2, DIM_IN)).astype("float32"),
        "y": labels,
    }


def loss_variables(loss):
    """Trainable variables owned by a loss (learnable temperatures and scales)."""
    owner = getattr(loss, "loss", loss)  # CrossBatchMemory wraps a loss
    found = []
    scale = getattr(owner, "logit_scale", None)
    if scale is not None and hasattr(scale, "trainable_weights"):
        found += list(scale.trainable_weights)
    log_t = getattr(owner, "log_temperature", None)
    if log_t is not None:
        found.append(log_t)
    return found


class LossSet:
    """The losses in `names`, a shared embedding layer `tanh(x W + b)`, their variables."""

    def __init__(self, names, reduction=None):
        rng = np.random.default_rng(123)
        self.kernel = keras.Variable(rng.normal(size=(DIM_IN, DIM)).astype("float32") * 0.7)
        self.bias = keras.Variable(rng.normal(size=(DIM,)).astype("float32") * 0.1)
        self.losses = {name: LOSSES[name][0]() for name in names}
        if reduction is not None:
            for loss in self.losses.values():
                loss.reduction = reduction

    def embed(self, x):
        return tf.tanh(tf.einsum("...i,ij->...j", x, self.kernel) + self.bias)

    def step(self, name, x, y):
        """Loss value and gradients (variables, inputs) on this device's batch."""
        loss = self.losses[name]
        kind = LOSSES[name][1]
        variables = [self.kernel, self.bias] + loss_variables(loss)
        with tf.GradientTape() as tape:
            tape.watch(x)
            labels = y if kind.startswith("labels") else None
            value = loss(labels, self.embed(x))
        grads = tape.gradient(value, variables + [x])
        grads = [
            tf.zeros_like(v) if g is None else tf.convert_to_tensor(g)
            for v, g in zip(variables + [x], grads)
        ]
        return value, grads[:-1], grads[-1]


def run_single(names, batches, reduction=None):
    """Eager one-device reference: per step, {name: (loss, [var grads], input grad)}."""
    model = LossSet(names, reduction)
    out = []
    for inputs in batches:
        step = {}
        for name in names:
            kind = LOSSES[name][1]
            x = tf.constant(inputs[kind])
            value, gvars, gx = model.step(name, x, tf.constant(inputs["y"]))
            step[name] = (value.numpy(), [g.numpy() for g in gvars], gx.numpy())
        out.append(step)
    return out


def split_sizes(batch, n):
    base, extra = divmod(batch, n)
    return [base + (1 if i < extra else 0) for i in range(n)]


def run_distributed(strategy, names, batches, sizes=None, reduction=None):
    """Same as `run_single` under `strategy`, with variable gradients summed over replicas
    (as Keras' optimizer does) and input gradients concatenated in replica order."""
    n = strategy.num_replicas_in_sync
    with strategy.scope():
        model = LossSet(names, reduction)

    def replica_fn(inputs):
        ctx = tf.distribute.get_replica_context()
        result = {}
        for name in names:
            kind = LOSSES[name][1]
            value, gvars, gx = model.step(name, inputs[kind], inputs["y"])
            result[name] = (
                ctx.all_reduce("sum", value),
                [ctx.all_reduce("sum", g) for g in gvars],
                gx,
            )
        return result

    # Like Keras' own train step, which is not converted by autograph.
    @tf.function(autograph=False)
    def train_step(dist_inputs):
        return strategy.run(replica_fn, args=(dist_inputs,))

    out = []
    for inputs in batches:
        batch = len(inputs["y"])
        cuts = np.cumsum([0] + (sizes or split_sizes(batch, n)))

        def value_fn(ctx, inputs=inputs, cuts=cuts):
            i = ctx.replica_id_in_sync_group
            return {k: v[cuts[i] : cuts[i + 1]] for k, v in inputs.items()}

        dist = strategy.experimental_distribute_values_from_function(value_fn)
        result = train_step(dist)
        step = {}
        for name in names:
            value, gvars, gx = result[name]
            local = strategy.experimental_local_results
            step[name] = (
                local(value)[0].numpy(),
                [local(g)[0].numpy() for g in gvars],
                np.concatenate([t.numpy() for t in local(gx)], axis=0),
            )
        out.append(step)
    return out


def compare(reference, candidate):
    """Max abs errors of loss, variable gradients, input gradients, with their scales."""
    report = {}
    for name in reference:
        (l1, v1, x1), (l2, v2, x2) = reference[name], candidate[name]
        report[name] = {
            "loss": float(l1),
            "loss_err": float(abs(l1 - l2)),
            "grad_var_scale": float(max(np.abs(g).max() for g in v1)),
            "grad_var_err": float(max(np.abs(a - b).max() for a, b in zip(v1, v2))),
            "grad_input_scale": float(np.abs(x1).max()),
            "grad_input_err": float(np.abs(x1 - x2).max()),
        }
    return report


def check_losses(only=None):
    names = only or list(LOSSES)
    batches = [make_inputs(0), make_inputs(1)]  # two steps: queues and memories fill up
    reference = run_single(names, batches)
    report = {"matrix": {}, "local_only": {}, "uneven": {}}
    strats = strategies()
    for n, strategy in strats.items():
        got = run_distributed(strategy, names, batches)
        print(f"{n} replicas done at {time.time() - START:.0f}s", file=sys.stderr, flush=True)
        for step, (ref, cand) in enumerate(zip(reference, got)):
            report["matrix"][f"{n}/{step}"] = compare(ref, cand)

    # Control: with the gather switched off, replicas contrast only their local batch.
    original = distribute._replica_context
    distribute._replica_context = lambda: None
    try:
        local_only = [k for k in LOCAL_ONLY if k in names]
        got = run_distributed(strats[2], local_only, batches[:1])
    finally:
        distribute._replica_context = original
    report["local_only"] = compare({k: reference[0][k] for k in local_only}, got[0])

    uneven_names = [k for k in UNEVEN if k in names]
    # With replicas of unequal size Keras' mean reduction weighs each replica's mean by
    # 1 / R (not by its share of the batch), for every Keras loss; the "sum" reduction
    # has no such weighting, so it isolates what the gather does with uneven sizes.
    uneven = [make_inputs(2, batch=7)]
    reference = run_single(uneven_names, uneven, reduction="sum")
    got = run_distributed(strats[4], uneven_names, uneven, sizes=[2, 2, 2, 1], reduction="sum")
    report["uneven"] = compare(reference[0], got[0])
    return report


# -- ContrastiveModel.fit ---------------------------------------------------------------


def _backbone():
    # No BatchNorm: per-replica batch statistics would differ from one device's.
    inputs = keras.Input((4, 4, 1))
    x = keras.layers.Flatten()(inputs)
    x = keras.layers.Dense(12, activation="relu")(x)
    return keras.Model(inputs, keras.layers.Dense(8)(x))


# Support sets and prototypes small enough for a batch of 8 and 2 steps.
# SwAV's prototypes train at the second step only (frozen at the first).
SMALL_STATE = {
    "nnclr": {"queue_size": 24},
    "dino": {"num_prototypes": 10, "teacher_warmup": 0.5},
    "swav": {"num_prototypes": 10, "freeze_prototypes_steps": 1},
}


def make_model(algorithm, batch_norm=False, synchronized=False):
    from tfcontrast.layers import PredictionHead, ProjectionHead
    from tfcontrast.models import ContrastiveModel, algorithms

    keras.utils.set_random_seed(0)
    algo = algorithms.get(algorithm)
    if isinstance(algo, algorithms.MoCoV2):
        algo = algorithms.MoCoV2(queue_size=24)
    small = SMALL_STATE.get(algo.name)
    if small is not None:
        algo = type(algo)(**small)
    heads = dict(batch_norm=batch_norm)
    if synchronized:
        heads["synchronized"] = True
    model = ContrastiveModel(
        _backbone(),
        projector=ProjectionHead((12,), 6, **heads),
        predictor=PredictionHead(12, 6, **heads) if algo.uses_predictor else None,
        algorithm=algo,
    )
    model.build((None, 2, 4, 4, 1))
    # A small step: VICReg's weighted terms (25, 25, 1) diverge with a large one.
    model.compile(optimizer=keras.optimizers.SGD(0.05))
    return model


def fit_weights(algorithm, strategy, initial, x, y, **kwargs):
    """Weights after `fit` for 2 steps of global batch 8, from `initial` weights."""
    scope = strategy.scope() if strategy is not None else _null()
    with scope:
        model = make_model(algorithm, **kwargs)
        if initial is not None:
            model.set_weights(initial)
    start = [np.array(w) for w in model.get_weights()]
    history = model.fit(x, y, batch_size=GLOBAL_BATCH, epochs=1, shuffle=False, verbose=0)
    weights = [np.asarray(w, dtype=np.float64) for w in model.get_weights()]
    trainable = {id(v) for v in model.trainable_weights}
    moved = max(
        float(np.abs(np.asarray(v, np.float64) - np.asarray(s, np.float64)).max())
        for v, s in zip(model.weights, start)
        if id(v) in trainable
    )
    names = [v.path for v in model.weights]
    return start, weights, names, float(history.history["loss"][-1]), moved


class _null:
    def __enter__(self):
        return self

    def __exit__(self, *args):
        return False


def check_models(only=None):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(16, 2, 4, 4, 1)).astype("float32")
    y = np.array([0, 1, 2, 3] * 4, dtype="int32")
    strats = strategies()
    report = {}
    cases = [(a, {}) for a in ALGORITHMS]
    cases.append(("simclr_sync_bn", {"batch_norm": True, "synchronized": True}))
    cases.append(("simclr_local_bn", {"batch_norm": True}))
    for case, kwargs in cases:
        if only and case not in only:
            continue
        algorithm = case.split("_sync_bn")[0].split("_local_bn")[0]
        labels = y if algorithm == "supcon" else None
        initial, ref, names, ref_loss, moved = fit_weights(
            algorithm, None, None, x, labels, **kwargs
        )
        entry = {
            "moved": moved,
            "loss": ref_loss,
            "weight_scale": max(float(np.abs(w).max()) for w in ref),
        }
        for n, strategy in strats.items():
            if case == "simclr_local_bn" and n == 4:
                continue
            _, got, _, loss, _ = fit_weights(algorithm, strategy, initial, x, labels, **kwargs)
            errors = [float(np.abs(a - b).max()) for a, b in zip(ref, got)]
            worst = int(np.argmax(errors))
            print(f"{case} {n} done at {time.time() - START:.0f}s", file=sys.stderr, flush=True)
            entry[str(n)] = {
                "weight_err": errors[worst],
                "worst_weight": names[worst],
                "loss_err": abs(loss - ref_loss),
            }
        report[case] = entry
    return report


def main():
    task, out = sys.argv[1], sys.argv[2]
    start = time.time()
    only = sys.argv[3].split(",") if len(sys.argv) > 3 else None
    report = check_losses(only) if task == "losses" else check_models(only)
    report["_seconds"] = time.time() - start
    with open(out, "w") as f:
        json.dump(report, f, indent=1)


if __name__ == "__main__":
    main()
