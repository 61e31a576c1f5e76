"""Cross-replica helpers: losses see the global batch under `tf.distribute`.

Contrastive losses want as many negatives as the global batch holds. Under a
`tf.distribute` strategy with more than one replica, `gather_references` all-gathers
labels and embeddings across replicas (the gather is differentiable, so each replica's
gradient flows back to the replica that produced the embedding) and tells the caller
where its own rows sit in the gathered batch. With one replica, or on backends other
than TensorFlow, it returns the local batch unchanged.

TensorFlow is imported only when the Keras backend is TensorFlow.
"""

from __future__ import annotations

import keras
from keras import ops


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


def all_gather(x):
    """Concatenates `x` from every replica along axis 0 (identity with one replica)."""
    ctx = _replica_context()
    if ctx is None:
        return x
    return ctx.all_gather(x, axis=0)


def gather_references(labels, embeddings):
    """Returns `(global_labels, global_embeddings, offset)`.

    `offset` is the row of the gathered batch at which this replica's batch starts.
    Labels may be `None` (self-supervised losses).
    """
    ctx = _replica_context()
    if ctx is None:
        return labels, embeddings, 0
    import tensorflow as tf

    local = tf.shape(embeddings)[:1]
    sizes = ctx.all_gather(local, axis=0)
    replica = ctx.replica_id_in_sync_group
    offset = tf.reduce_sum(sizes[:replica])
    gathered = ctx.all_gather(embeddings, axis=0)
    gathered_labels = None if labels is None else ctx.all_gather(labels, axis=0)
    return gathered_labels, gathered, offset
