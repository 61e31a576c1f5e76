"""Cross-replica helpers: losses see the global batch under `tf.distribute`.

Contrastive losses want as many negatives as the global batch holds, and VICReg / Barlow
Twins want statistics of the global batch. Under a `tf.distribute` strategy with more
than one replica in sync (`MirroredStrategy`, `MultiWorkerMirroredStrategy`,
`TPUStrategy`), `gather_references` all-gathers labels and embeddings across replicas and
tells the caller where its own rows sit in the gathered batch. With one replica, in
cross-replica context, or on backends other than TensorFlow it returns the local batch
unchanged, so the losses need no `if distributed` of their own.

Gradient semantics (why one replica or many give the same gradient, with no rescaling
here). Let `R` replicas each hold `B` rows of a global batch of `R * B`:

1. Each replica computes its per-example losses against the gathered references and
   Keras reduces them to the local mean times `1 / R`
   (`keras.losses.Loss` with `"sum_over_batch_size"`), so the sum over replicas of the
   replica losses is the global mean, the single-device loss.
2. The backward pass of `ReplicaContext.all_gather` all-reduces (sums) the upstream
   gradients of every replica with respect to the gathered tensor and hands each replica
   the slice of its own rows. A replica's embeddings therefore receive the gradient of
   the *sum* of all replica losses, through every replica's use of them as references,
   plus their direct use as anchors on their own replica.
3. Keras sums the variable gradients of the replicas (all-reduce SUM in
   `optimizer.apply_gradients`).

Together: the summed gradient is the gradient of the global-batch loss, exactly as on
one device. (No factor `R` appears: the `1 / R` of step 1 and the sum of step 3 cancel,
and step 2 is the plain chain rule of a concatenation.) The tests in
`tests/distribute/` check loss, embedding gradients and variable gradients against one
device for every loss, at 2 and 4 replicas, and one `fit` step of every
`ContrastiveModel` algorithm.

Other backends. With JAX and `keras.distribution.DataParallel`, the train step is one
SPMD program over globally sharded arrays: a loss already sees the global batch (XLA
inserts the collectives), so returning the local (= global) batch is correct and no
gather is needed. The PyTorch backend has no Keras-level data parallelism; a loss there
sees what it is given.

TensorFlow is imported only when the Keras backend is TensorFlow.
"""

from __future__ import annotations

import keras

__all__ = [
    "all_gather",
    "all_reduce_mean",
    "all_reduce_sum",
    "gather_references",
    "get_strategy",
    "patch_keras_multi_worker_fit",
    "num_replicas",
    "replica_id",
]


def _replica_context():
    """The TF replica context when more than one replica is in sync, else None."""
    if keras.backend.backend() != "tensorflow":
        return None
    import tensorflow as tf

    if not tf.distribute.has_strategy():
        return None
    ctx = tf.distribute.get_replica_context()
    # In cross-replica context (e.g. inside `strategy.scope()` but outside `run`)
    # there is nothing to gather.
    if ctx is None or ctx.num_replicas_in_sync <= 1:
        return None
    return ctx


def num_replicas() -> int:
    """Number of replicas in sync (1 outside a multi-replica `tf.distribute` run)."""
    ctx = _replica_context()
    return 1 if ctx is None else ctx.num_replicas_in_sync


def replica_id():
    """This replica's index in the sync group (0 outside a multi-replica run).

    A Python int outside a replicated run; under a strategy it may be a scalar tensor.
    """
    ctx = _replica_context()
    return 0 if ctx is None else ctx.replica_id_in_sync_group


def all_gather(x):
    """Concatenates `x` from every replica along axis 0 (identity with one replica).

    Differentiable: the gradient of the gathered tensor is summed over replicas and
    each replica receives the slice of its own rows (see the module docstring).
    Replicas may hold different numbers of rows (the last, uneven batch), except on
    TPU, where every replica must have the same static shape (`drop_remainder=True`).
    """
    ctx = _replica_context()
    if ctx is None:
        return x
    return ctx.all_gather(x, axis=0)


def all_reduce_sum(x):
    """Sum of `x` over replicas (identity with one replica); differentiable."""
    ctx = _replica_context()
    if ctx is None:
        return x
    return ctx.all_reduce("sum", x)


def all_reduce_mean(x):
    """Mean of `x` over replicas (identity with one replica); differentiable."""
    ctx = _replica_context()
    if ctx is None:
        return x
    return ctx.all_reduce("mean", x)


def gather_references(labels, embeddings):
    """Returns `(global_labels, global_embeddings, offset)`.

    `global_embeddings` is the concatenation of every replica's `embeddings` in replica
    order, `offset` the row of the gathered batch at which this replica's batch starts
    (so local row `i` is global row `offset + i`). Labels may be `None`
    (self-supervised losses); they are gathered without gradient. With one replica,
    or on a backend other than TensorFlow, returns `(labels, embeddings, 0)`.

    Example, in a loss's `call`:

    ```python
    ref_labels, refs, offset = gather_references(labels, embeddings)
    logits = embeddings @ refs.T            # (B_local, B_global)
    # anchor i's own row among the references is column offset + i
    ```
    """
    ctx = _replica_context()
    if ctx is None:
        return labels, embeddings, 0
    import tensorflow as tf

    # Per-replica sizes, so that an uneven last batch still gets the right offset.
    local = tf.shape(embeddings)[:1]
    sizes = ctx.all_gather(local, axis=0)
    replica = ctx.replica_id_in_sync_group
    offset = tf.reduce_sum(sizes[:replica])
    gathered = ctx.all_gather(embeddings, axis=0)
    gathered_labels = None
    if labels is not None:
        gathered_labels = ctx.all_gather(tf.stop_gradient(labels), axis=0)
    return gathered_labels, gathered, offset


def patch_keras_multi_worker_fit() -> bool:
    """Works around a Keras 3 bug that breaks `fit` under `MultiWorkerMirroredStrategy`.

    Keras 3's TensorFlow trainer reduces the per-replica logs of each step with
    `strategy.reduce("MEAN", value, axis=0)` in multi-worker mode, which fails on the
    scalar loss and metrics ("Invalid reduction dimension 0 for input with 0
    dimensions"; tensorflow/tensorflow#72388). This wraps the trainer's
    `reduce_per_replica` so that scalars are reduced with `axis=None` (a cross-worker
    mean of identical values) and everything else as before. Idempotent; returns True
    when the patch is in place (False on other backends, or on a Keras whose trainer
    no longer looks like this: see `tfcontrast._keras_compat.patch_multi_worker_reduce`).
    `get_strategy("multi_worker")` applies it.
    """
    from tfcontrast import _keras_compat

    return _keras_compat.patch_multi_worker_reduce()


def get_strategy(kind: str = "auto", tpu: str | None = None):
    """Builds a `tf.distribute` strategy by name (TensorFlow backend).

    Args:
        kind: `"auto"`, `"default"`, `"mirrored"`, `"multi_worker"` or `"tpu"`.
            `"auto"` picks `TPUStrategy` when `tpu` is given, `MultiWorkerMirroredStrategy`
            when the `TF_CONFIG` environment variable names more than one task (and
            applies `patch_keras_multi_worker_fit`),
            `MirroredStrategy` with more than one GPU, and the default (one-device)
            strategy otherwise.
        tpu: TPU address or name for `TPUClusterResolver` (`""` or `"local"` on a TPU VM).

    Returns:
        A `tf.distribute.Strategy`. Create and compile the model in its `scope()`;
        `fit` does the rest.

    Example:

    ```python
    strategy = tfcontrast.distribute.get_strategy("mirrored")
    with strategy.scope():
        model = ContrastiveModel(backbone, algorithm="simclr")
        model.compile(optimizer="adam")
    model.fit(dataset, epochs=100)      # global batch = dataset batch size
    ```
    """
    choices = ("auto", "default", "mirrored", "multi_worker", "tpu")
    if kind not in choices:
        raise ValueError(f"get_strategy: `kind` must be one of {list(choices)}; received {kind!r}.")
    if keras.backend.backend() != "tensorflow":
        raise ValueError(
            "get_strategy: `tf.distribute` strategies need the TensorFlow backend; received "
            f"backend {keras.backend.backend()!r}. On JAX use "
            "`keras.distribution.set_distribution(keras.distribution.DataParallel())`."
        )
    import json
    import os

    import tensorflow as tf

    if kind == "auto":
        cluster = json.loads(os.environ.get("TF_CONFIG", "{}")).get("cluster", {})
        if tpu is not None:
            kind = "tpu"
        elif sum(len(tasks) for tasks in cluster.values()) > 1:
            kind = "multi_worker"
        elif len(tf.config.list_logical_devices("GPU")) > 1:
            kind = "mirrored"
        else:
            kind = "default"
    if kind == "default":
        return tf.distribute.get_strategy()
    if kind == "mirrored":
        return tf.distribute.MirroredStrategy()
    if kind == "multi_worker":
        patch_keras_multi_worker_fit()
        return tf.distribute.MultiWorkerMirroredStrategy()
    resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=tpu or "")
    tf.config.experimental_connect_to_cluster(resolver)
    tf.tpu.experimental.initialize_tpu_system(resolver)
    return tf.distribute.TPUStrategy(resolver)
