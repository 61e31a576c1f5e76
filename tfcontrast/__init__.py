"""tfcontrast: contrastive and metric learning for Keras 3 and TensorFlow.

The public surface is organised in submodules:

- `tfcontrast.distances`: pairwise distances and similarities.
- `tfcontrast.miners`: pair and triplet mining.
- `tfcontrast.losses`: metric-learning and self-supervised losses.
"""

__version__ = "0.1.0"

from tfcontrast import data, distances, losses, miners  # noqa: E402
from tfcontrast import evaluation, retrieval  # noqa: E402

__all__ = ["__version__", "data", "distances", "evaluation", "losses", "miners", "retrieval"]
