"""Training monitors for self-supervised runs: kNN accuracy and collapse.

Both write their values into the epoch `logs`, so they appear in `History` and, when a
`keras.callbacks.TensorBoard` comes after them in the callback list, in TensorBoard.

Example:

```python
model.fit(images, epochs=100, callbacks=[
    KNNMonitor(train_images, train_labels, val_images, val_labels, every=5),
    CollapseMonitor(val_images),
    keras.callbacks.TensorBoard("runs/simclr"),
])
```
"""

from __future__ import annotations

import numpy as np

from tfcontrast import _checks
from tfcontrast._normalization import l2_normalize_numpy
from tfcontrast.evaluation.callbacks import EpochMetrics
from tfcontrast.evaluation.knn import knn_accuracy


def _embed(model, images, batch_size):
    return np.asarray(model.predict(images, batch_size=batch_size, verbose=0), np.float64)


def collapse_statistics(embeddings):
    """`(std, effective_rank)` of a set of embeddings.

    `std` is the mean per-dimension standard deviation of the L2-normalised embeddings:
    about `1/sqrt(D)` for a healthy embedding, 0 for a collapsed one (SimSiam, Fig. 2).
    `effective_rank` is `exp(entropy(singular values / sum))` of the centred embeddings
    (Roy & Vetterli, 2007): between 1 (collapse to a line) and `D`.
    """
    z = l2_normalize_numpy(np.asarray(embeddings, np.float64))
    std = float(np.mean(np.std(z, axis=0)))
    s = np.linalg.svd(z - z.mean(axis=0), compute_uv=False)
    total = s.sum()
    if total <= 0:
        return std, 1.0
    p = s / total
    p = p[p > 0]
    return std, float(np.exp(-np.sum(p * np.log(p))))


class KNNMonitor(EpochMetrics):
    """Logs `knn_top1`: kNN accuracy of the served embedding on a held-out split.

    Args:
        train_images, train_labels: the labelled memory bank.
        val_images, val_labels: the held-out queries.
        k, temperature: kNN vote parameters (200, 0.1 as in InstDisc / lightly).
        every: evaluate every `every` epochs (and at the last epoch).
        name: the key written into the logs.
    """

    def __init__(
        self,
        train_images,
        train_labels,
        val_images,
        val_labels,
        k: int = 200,
        temperature: float = 0.1,
        every: int = 1,
        batch_size: int = 512,
        name: str = "knn_top1",
    ):
        every = _checks.integer("every", every, "KNNMonitor", whole_floats=True)
        super().__init__(every=every, at_last_epoch=True, names=(name,))
        self.data = (train_images, np.asarray(train_labels), val_images, np.asarray(val_labels))
        self.k, self.temperature = k, temperature
        self.batch_size, self.name = batch_size, name

    def compute(self, epoch):
        train_x, train_y, val_x, val_y = self.data
        # A memory bank smaller than `k` votes with all of it.
        k = min(self.k, len(train_y))
        accuracy = knn_accuracy(
            _embed(self.model, train_x, self.batch_size),
            train_y,
            _embed(self.model, val_x, self.batch_size),
            val_y,
            k=k,
            temperature=self.temperature,
        )
        return {self.name: accuracy}


class CollapseMonitor(EpochMetrics):
    """Logs `embedding_std` and `effective_rank` of the served embedding every epoch.

    A falling std and an effective rank near 1 are the signature of representation
    collapse (SimSiam without stop-gradient, BYOL without predictor).
    """

    def __init__(self, images, every: int = 1, batch_size: int = 512):
        every = _checks.integer("every", every, "CollapseMonitor", whole_floats=True)
        super().__init__(every=every, names=("embedding_std", "effective_rank"))
        self.images, self.batch_size = images, batch_size

    def compute(self, epoch):
        std, rank = collapse_statistics(_embed(self.model, self.images, self.batch_size))
        return {"embedding_std": std, "effective_rank": rank}
