"""Pictures of embeddings: 2-D projections, neighbour grids, training curves, and a
TensorBoard embedding-projector export.

matplotlib is imported inside the functions, and figures are drawn on bare
`matplotlib.figure.Figure` objects (not pyplot), so `import tfcontrast` stays light and
the user's backend and open figures are left alone. Every plotting function writes a PNG of exactly
`figsize * dpi` pixels (no tight bounding box) and returns its path.
"""

from __future__ import annotations

import os

import numpy as np

from tfcontrast.evaluation._common import as_embeddings, as_labels, to_numpy


def _figure(figsize, dpi):
    # A bare Figure (no pyplot) leaves the user's backend and open figures alone.
    from matplotlib.figure import Figure

    return Figure(figsize=figsize, dpi=dpi)


def _cmap(name: str):
    import matplotlib

    return matplotlib.colormaps[name]


def _save(fig, path: str, dpi: int) -> str:
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fig.savefig(path, dpi=dpi, format="png")
    return path


def project_2d(embeddings, method: str = "auto", seed: int = 0) -> tuple[np.ndarray, str]:
    """Projects `(N, D)` embeddings to `(N, 2)`.

    `method`: `"umap"` (needs `umap-learn`), `"tsne"` (scikit-learn), `"pca"`, or
    `"auto"` (UMAP when installed, else t-SNE). Returns `(points, method_used)`;
    `method_used` is `"collapsed"` (all points at 0) when every row is the same or a value
    is not finite: there is nothing to project.
    """
    x = as_embeddings(embeddings, "embeddings")
    if method not in ("auto", "umap", "tsne", "pca"):
        raise ValueError(
            f"projection_plot: `method` must be one of ['auto', 'umap', 'tsne', 'pca']; "
            f"received {method!r}."
        )
    if method in ("auto", "umap"):
        try:
            import umap
        except ImportError:
            if method == "umap":
                raise ImportError(
                    "projection_plot(method='umap') needs `pip install umap-learn`."
                ) from None
            method = "tsne"
        else:
            n_neighbors = max(2, min(15, x.shape[0] - 1))
            reducer = umap.UMAP(n_components=2, n_neighbors=n_neighbors, random_state=seed)
            return reducer.fit_transform(x), "umap"
    if not np.isfinite(x).all() or np.ptp(x, axis=0).max(initial=0.0) <= 1e-12:
        # A collapsed embedding (every row the same) or a non-finite one has no shape to
        # show, and t-SNE on identical rows can crash the process: the points stay at 0.
        return np.zeros((x.shape[0], 2), np.float32), "collapsed"
    if x.shape[1] <= 2:
        pts = np.zeros((x.shape[0], 2), np.float32)
        pts[:, : x.shape[1]] = x
        return pts, "identity"
    if method == "pca" or x.shape[0] < 5:
        from sklearn.decomposition import PCA

        return PCA(n_components=2, random_state=seed).fit_transform(x), "pca"
    from sklearn.manifold import TSNE

    perplexity = float(min(30.0, max(2.0, (x.shape[0] - 1) / 3.0)))
    tsne = TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed)
    return tsne.fit_transform(x), "tsne"


def projection_plot(
    embeddings,
    labels,
    path: str,
    method: str = "auto",
    max_points: int | None = 5000,
    figsize=(6.0, 6.0),
    dpi: int = 100,
    title: str | None = None,
    seed: int = 0,
) -> str:
    """Scatter plot of a 2-D projection of the embeddings, coloured by label.

    Args:
        embeddings: `(N, D)` embeddings.
        labels: `(N,)` labels (colour per class; a legend when there are <= 20), or
            `None` for unlabelled points (one colour).
        path: PNG file to write.
        method: `"auto"` (UMAP when installed, else t-SNE), `"umap"`, `"tsne"`, `"pca"`.
        max_points: project a seeded random subset of at most this many points.
        figsize, dpi: the PNG is `figsize[0]*dpi x figsize[1]*dpi` pixels.
        title: optional title (defaults to the method used).
        seed: seed of the subset and of the projection.

    Returns:
        `path`.
    """
    x = as_embeddings(embeddings, "embeddings")
    unlabelled = labels is None
    y = np.zeros(x.shape[0], np.int64) if unlabelled else as_labels(labels, "labels", x.shape[0])
    if max_points is not None and x.shape[0] > max_points:
        keep = np.sort(np.random.default_rng(seed).choice(x.shape[0], max_points, replace=False))
        x, y = x[keep], y[keep]
    pts, used = project_2d(x, method=method, seed=seed)
    fig = _figure(figsize, dpi)
    ax = fig.subplots()
    classes, ids = np.unique(y, return_inverse=True)
    cmap = _cmap("tab20" if classes.shape[0] > 10 else "tab10")
    colors = cmap(ids % cmap.N)
    ax.scatter(pts[:, 0], pts[:, 1], c=colors, s=6, linewidths=0)
    if classes.shape[0] <= 20 and not unlabelled:
        for i, c in enumerate(classes):
            ax.scatter([], [], color=cmap(i % cmap.N), label=str(c), s=12)
        ax.legend(loc="best", fontsize="x-small", markerscale=1.5, frameon=False)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(title if title is not None else f"{used} projection ({x.shape[0]} points)")
    return _save(fig, path, dpi)


def _as_images(images, name: str) -> np.ndarray:
    arr = to_numpy(images, name)
    if arr.ndim == 4 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    if arr.ndim not in (3, 4):
        raise ValueError(
            f"neighbour_grid: `{name}` must be images (N, H, W), (N, H, W, 1) or (N, H, W, 3); "
            f"received shape {arr.shape}."
        )
    arr = arr.astype(np.float32)
    lo, hi = float(arr.min()), float(arr.max())
    if lo < 0.0 or hi > 1.0:  # rescale e.g. [0, 255] or [-1, 1] images for imshow
        arr = (arr - lo) / max(hi - lo, 1e-12)
    return arr


def neighbour_grid(
    query_images,
    index_images,
    neighbour_indices,
    path: str,
    query_labels=None,
    index_labels=None,
    cell_size: float = 1.0,
    dpi: int = 100,
) -> str:
    """Grid of query images (first column) and their nearest neighbours (next columns).

    With labels, each neighbour gets a green (same label as the query) or red frame.

    Args:
        query_images: `(Q, H, W[, C])` images.
        index_images: `(N, H, W[, C])` images of the indexed set.
        neighbour_indices: `(Q, k)` indices into `index_images`, e.g. `Index.search(...)
            .indices`.
        path: PNG file to write.
        query_labels, index_labels: optional labels to colour the frames.
        cell_size: inches per image; the PNG is `(k + 1) * cell_size * dpi` by
            `Q * cell_size * dpi` pixels.
        dpi: resolution.

    Returns:
        `path`.
    """
    q_img = _as_images(query_images, "query_images")
    i_img = _as_images(index_images, "index_images")
    nb = to_numpy(neighbour_indices, "neighbour_indices")
    if nb.ndim != 2 or nb.shape[0] != q_img.shape[0]:
        raise ValueError(
            f"neighbour_grid: `neighbour_indices` must have shape ({q_img.shape[0]}, k); "
            f"received {nb.shape}."
        )
    if nb.size and (nb.min() < 0 or nb.max() >= i_img.shape[0]):
        raise ValueError("neighbour_grid: `neighbour_indices` out of range of `index_images`.")
    if (query_labels is None) != (index_labels is None):
        raise ValueError("neighbour_grid: pass both `query_labels` and `index_labels` or neither.")
    qy = None if query_labels is None else to_numpy(query_labels, "query_labels")
    iy = None if index_labels is None else to_numpy(index_labels, "index_labels")
    rows, cols = q_img.shape[0], nb.shape[1] + 1
    fig = _figure((cols * cell_size, rows * cell_size), dpi)
    axes = fig.subplots(rows, cols, squeeze=False)
    fig.subplots_adjust(left=0.01, right=0.99, bottom=0.01, top=0.99, wspace=0.05, hspace=0.05)
    cmap = "gray" if q_img.ndim == 3 else None
    for r in range(rows):
        for c in range(cols):
            ax = axes[r, c]
            img = q_img[r] if c == 0 else i_img[nb[r, c - 1]]
            ax.imshow(img, cmap=cmap, vmin=0.0, vmax=1.0)
            ax.set_xticks([])
            ax.set_yticks([])
            if c == 0:
                color, width = "black", 2.5
            elif qy is not None:
                color = "tab:green" if iy[nb[r, c - 1]] == qy[r] else "tab:red"
                width = 2.5
            else:
                color, width = "lightgray", 0.5
            for spine in ax.spines.values():
                spine.set_edgecolor(color)
                spine.set_linewidth(width)
    return _save(fig, path, dpi)


def training_curves(history, path: str, keys=None, figsize=None, dpi: int = 100) -> str:
    """Plots training curves, one panel per metric with its `val_` counterpart.

    Args:
        history: a `keras.callbacks.History` (as returned by `fit`) or a dict whose
            values are either lists `[value per epoch]` or dicts `{epoch: value}`
            (epochs counted from 1), e.g. a monitor's `.values`. Use the dict form for
            metrics logged only every few epochs, so they are plotted at their real
            epochs; a shorter list than the History's epochs is plotted against its
            own index.
        path: PNG file to write.
        keys: metric names to plot (without `val_`); default: all.
        figsize: `(width, height)` inches; default `(4 * panels, 3.2)` capped at 4
            panels per row.
        dpi: resolution.

    Returns:
        `path`.
    """
    hist = getattr(history, "history", history)
    if not isinstance(hist, dict) or not hist:
        raise ValueError("training_curves: `history` must be a History or a non-empty dict.")
    names = sorted({k[4:] if k.startswith("val_") and k[4:] in hist else k for k in hist})
    if keys is not None:
        missing = [k for k in keys if k not in hist and "val_" + k not in hist]
        if missing:
            raise ValueError(f"training_curves: `keys` not in the history: {missing}.")
        names = list(keys)
    if "loss" in names:
        names.remove("loss")
        names.insert(0, "loss")
    n = len(names)
    ncols = min(n, 4)
    nrows = int(np.ceil(n / ncols))
    if figsize is None:
        figsize = (4.0 * ncols, 3.2 * nrows)
    from matplotlib.ticker import MaxNLocator

    fig = _figure(figsize, dpi)
    axes = fig.subplots(nrows, ncols, squeeze=False)
    epochs_of = getattr(history, "epoch", None)
    for i, name in enumerate(names):
        ax = axes[i // ncols, i % ncols]
        for key, style in ((name, "-"), ("val_" + name, "--")):
            if key not in hist:
                continue
            if isinstance(hist[key], dict):
                x = np.asarray(sorted(hist[key]), dtype=np.int64)
                values = np.asarray([hist[key][e] for e in x], dtype=np.float64)
            else:
                values = np.asarray(hist[key], dtype=np.float64)
                x = np.arange(1, values.shape[0] + 1)
                if epochs_of is not None and len(epochs_of) == values.shape[0]:
                    x = np.asarray(epochs_of) + 1
            ax.plot(x, values, style, marker="o" if values.shape[0] < 30 else None, ms=3, label=key)
        ax.set_title(name)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
    for j in range(n, nrows * ncols):
        axes[j // ncols, j % ncols].axis("off")
    fig.tight_layout()
    return _save(fig, path, dpi)


def _tsv_cell(value) -> str:
    text = str(value)
    return text.replace("\t", " ").replace("\n", " ").replace("\r", " ")


def export_projector(
    embeddings,
    log_dir: str,
    labels=None,
    metadata: dict | None = None,
    tensor_name: str = "embedding",
) -> dict[str, str]:
    """Writes a TensorBoard embedding-projector export (plain text, no TensorFlow needed).

    Files in `log_dir`: `tensors.tsv` (one embedding per line, tab separated),
    `metadata.tsv` (labels / metadata columns; a header row only when there are several
    columns, as the projector expects) and `projector_config.pbtxt`. Open with
    `tensorboard --logdir log_dir` (Projector tab) or load the two TSVs at
    projector.tensorflow.org.

    Args:
        embeddings: `(N, D)` embeddings.
        log_dir: output directory (created).
        labels: optional `(N,)` labels, written as the `label` column.
        metadata: optional `{column name: (N,) values}` extra columns.
        tensor_name: name shown in the projector.

    Returns:
        Paths `{"tensors": ..., "metadata": ... (if any), "config": ...}`.
    """
    x = as_embeddings(embeddings, "embeddings")
    columns: dict[str, np.ndarray] = {}
    if labels is not None:
        columns["label"] = as_labels(labels, "labels", x.shape[0])
    for name, values in (metadata or {}).items():
        vals = to_numpy(values, f"metadata[{name!r}]")
        if vals.shape[:1] != (x.shape[0],):
            raise ValueError(
                f"export_projector: `metadata[{name!r}]` must have {x.shape[0]} entries; "
                f"received shape {vals.shape}."
            )
        columns[str(name)] = vals
    os.makedirs(log_dir, exist_ok=True)
    paths = {"tensors": os.path.join(log_dir, "tensors.tsv")}
    np.savetxt(paths["tensors"], x, delimiter="\t", fmt="%.6g")
    config = ["embeddings {", f'  tensor_name: "{tensor_name}"', '  tensor_path: "tensors.tsv"']
    if columns:
        paths["metadata"] = os.path.join(log_dir, "metadata.tsv")
        with open(paths["metadata"], "w", encoding="utf-8") as f:
            if len(columns) > 1:
                f.write("\t".join(_tsv_cell(c) for c in columns) + "\n")
            for i in range(x.shape[0]):
                f.write("\t".join(_tsv_cell(col[i]) for col in columns.values()) + "\n")
        config.append('  metadata_path: "metadata.tsv"')
    config.append("}")
    paths["config"] = os.path.join(log_dir, "projector_config.pbtxt")
    with open(paths["config"], "w", encoding="utf-8") as f:
        f.write("\n".join(config) + "\n")
    return paths
