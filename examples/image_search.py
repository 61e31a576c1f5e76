"""Image search: embed digits with a self-supervised model, index them, query the index.

Trains SimCLR on scikit-learn's digits without labels (a short run), embeds the 1257
training digits into a `tfcontrast.retrieval.Index` (cosine, exact search, labels and
payloads stored beside the vectors), then searches it with held-out digits:

- prints the top-5 neighbours of a few queries;
- scores every held-out query with `tfcontrast.evaluation.retrieval_metrics` (a
  neighbour is relevant when it shows the same digit: precision@1, recall@5, MAP@R),
  beside the same search on raw pixels;
- writes to `--out`: the index (`index/index.json` + `index/arrays.npz`, reloadable
  with `Index.load`) and `neighbours.png`, a grid of queries and their neighbours
  framed green (same digit) or red.

    python examples/image_search.py --out=runs/image_search
    python examples/image_search.py --smoke --out=/tmp/search    # tests
"""

import os

import _digits
import numpy as np

from tfcontrast.evaluation import neighbour_grid, retrieval_metrics
from tfcontrast.layers import ProjectionHead, digits_augmentation
from tfcontrast.models import ContrastiveModel, algorithms
from tfcontrast.retrieval import Index


def flags(parser):
    parser.add_argument("--out", default="runs/image_search", help="output directory")
    parser.add_argument("--queries", type=int, default=8, help="queries shown and drawn")
    parser.add_argument("--k", type=int, default=5, help="neighbours per query")


def main(argv=None):
    args = _digits.parse_args(__doc__, argv, epochs=40, extra=flags)
    data = x_train, y_train, x_test, y_test = _digits.load(args)

    # 1. An embedding model, trained without labels.
    model = ContrastiveModel(
        _digits.backbone(args),
        projector=ProjectionHead(hidden_dims=(256,), output_dim=64),
        algorithm=algorithms.SimCLR(temperature=0.2),
        augmentation=digits_augmentation(8, seed=args.seed),
    )
    _digits.train(model, data, args)
    train_emb = np.asarray(model.predict(x_train, verbose=0))
    test_emb = np.asarray(model.predict(x_test, verbose=0))

    # 2. The index: vectors, labels and a payload per item (here its position).
    index = Index(metric="cosine")
    index.add(train_emb, labels=y_train, payloads=[{"train_id": i} for i in range(len(y_train))])

    # 3. Search.
    scores, neighbours, labels, _ = index.search(test_emb[: args.queries], k=args.k)
    for q in range(args.queries):
        found = " ".join(f"{label}({score:.2f})" for label, score in zip(labels[q], scores[q]))
        print(f"query {q}: digit {y_test[q]} -> {found}")

    # 4. Retrieval quality over all held-out queries, learned vs raw pixels.
    learned = retrieval_metrics(test_emb, y_test, train_emb, y_train, ks=(1, 5))
    flat = lambda a: a.reshape(len(a), -1)  # noqa: E731
    pixels = retrieval_metrics(flat(x_test), y_test, flat(x_train), y_train, ks=(1, 5))
    for name, m in (("raw pixels", pixels), ("SimCLR", learned)):
        print(
            f"{name:>10}: precision@1 {m['precision_at_1']:.3f}  recall@5 "
            f"{m['recall_at_5']:.3f}  MAP@R {m['map_at_r']:.3f}"
        )

    # 5. Save the index and a picture of the neighbours.
    os.makedirs(args.out, exist_ok=True)
    index_dir = index.save(os.path.join(args.out, "index"))
    grid = neighbour_grid(
        x_test[: args.queries, ..., 0],
        x_train[..., 0],
        neighbours,
        os.path.join(args.out, "neighbours.png"),
        query_labels=y_test[: args.queries],
        index_labels=y_train,
    )
    assert Index.load(index_dir).size == len(y_train)
    print(f"wrote {index_dir} and {grid}")
    return {**learned, "index_path": index_dir, "grid_path": grid}


if __name__ == "__main__":
    main()
