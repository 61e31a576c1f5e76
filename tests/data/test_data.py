import logging
import os

import numpy as np
import pytest
import tensorflow as tf

from tfcontrast import data
from tfcontrast.layers import RandomResizedCrop, multi_crop_augmentation, simclr_augmentation

pytestmark = pytest.mark.tf_only(reason="tfcontrast.data builds tf.data pipelines")


@pytest.fixture
def arrays(rng):
    x = rng.integers(0, 256, size=(40, 12, 12, 3), dtype=np.uint8)
    y = np.repeat(np.arange(5), 8)
    return x, y


def _write_png(path, array):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tf.io.write_file(path, tf.io.encode_png(array))


@pytest.fixture
def folder(tmp_path, rng):
    root = tmp_path / "images"
    for c, name in enumerate(["cat", "dog", "eel"]):
        for i in range(3 + c):
            img = rng.integers(0, 256, size=(10, 10, 3), dtype=np.uint8)
            _write_png(str(root / name / f"{i}.png"), img)
    (root / "cat" / "notes.txt").write_text("not an image")
    (root / "dog" / "broken.png").write_bytes(b"this is no png")
    return root


# -- loaders -----------------------------------------------------------------------


def test_from_arrays(arrays):
    x, y = arrays
    ds = data.from_arrays(x, y)
    image, label = next(iter(ds))
    assert image.dtype == tf.float32 and label.dtype == tf.int32
    np.testing.assert_allclose(image.numpy(), x[0] / 255.0, atol=1e-6)
    only = data.from_arrays(x[..., 0])  # (N, H, W) gets a channel axis
    assert tuple(only.element_spec.shape) == (12, 12, 1)


def test_from_arrays_bad_input(arrays):
    x, y = arrays
    with pytest.raises(ValueError, match=r"`x`.*\[0, 1\]"):
        data.from_arrays(x.astype("float32"), y)
    with pytest.raises(ValueError, match="`y`"):
        data.from_arrays(x, y[:3])
    with pytest.raises(ValueError, match="`x`"):
        data.from_arrays(np.zeros((4, 5)))


def test_from_npz(tmp_path, arrays):
    x, y = arrays
    path = tmp_path / "d.npz"
    np.savez(path, x=x, y=y)
    images, labels = next(iter(data.from_npz(str(path)).batch(40)))
    np.testing.assert_array_equal(labels.numpy(), y)
    assert images.shape == (40, 12, 12, 3)
    with pytest.raises(FileNotFoundError, match="missing.npz"):
        data.from_npz(str(tmp_path / "missing.npz"))
    np.savez(tmp_path / "bad.npz", images=x)
    with pytest.raises(ValueError, match="x_key"):
        data.from_npz(str(tmp_path / "bad.npz"))


def test_from_folder_skips_non_images_with_logged_count(folder, caplog):
    with caplog.at_level(logging.WARNING, logger="tfcontrast.data"):
        ds = data.from_folder(str(folder))
    assert "skipped 2 file(s)" in caplog.text
    assert ds.class_names == ["cat", "dog", "eel"]
    assert sorted(os.path.basename(p) for p in ds.skipped_files) == ["broken.png", "notes.txt"]
    items = list(ds.as_numpy_iterator())
    labels = [int(lbl) for _, lbl in items]
    assert labels == [0] * 3 + [1] * 4 + [2] * 5
    image = items[0][0]
    assert image.shape == (10, 10, 3) and image.dtype == np.float32
    assert 0.0 <= image.min() and image.max() <= 1.0


def test_from_folder_keeps_grayscale_files_one_channel(tmp_path, rng):
    root = tmp_path / "glyphs"
    for name in ("a", "b"):
        for i in range(3):
            gray = rng.integers(0, 256, size=(9, 9, 1), dtype=np.uint8)
            _write_png(str(root / name / f"{i}.png"), gray)
    image, _ = next(iter(data.from_folder(str(root)).as_numpy_iterator()))
    assert image.shape == (9, 9, 1)
    gray_png = np.asarray(tf.io.decode_png(tf.io.read_file(str(root / "a" / "0.png"))))
    np.testing.assert_allclose(image, gray_png / 255.0, atol=1e-6)
    # Asked for RGB, the gray files are decoded to 3 equal channels.
    rgb, _ = next(iter(data.from_folder(str(root), channels=3).as_numpy_iterator()))
    assert rgb.shape == (9, 9, 3) and np.allclose(rgb, rgb[..., :1])
    # One colour file among gray ones: everything is read as RGB.
    _write_png(str(root / "b" / "colour.png"), rng.integers(0, 256, (9, 9, 3), dtype=np.uint8))
    image, _ = next(iter(data.from_folder(str(root)).as_numpy_iterator()))
    assert image.shape == (9, 9, 3)


def test_from_folder_mixed_sizes(folder, rng):
    _write_png(str(folder / "eel" / "big.png"), rng.integers(0, 256, (14, 9, 3), dtype=np.uint8))
    with pytest.raises(ValueError, match="image_size"):
        data.from_folder(str(folder))
    ds = data.from_folder(str(folder), image_size=(6, 7), channels=1)
    shapes = {x.shape for x, _ in ds.as_numpy_iterator()}
    assert shapes == {(6, 7, 1)}


def test_from_folder_bad_paths(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        data.from_folder(str(tmp_path / "nowhere"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="holds no readable images"):
        data.from_folder(str(tmp_path / "empty"))
    (tmp_path / "one" / "a").mkdir(parents=True)
    (tmp_path / "one" / "a" / "x.txt").write_text("x")
    with pytest.raises(ValueError, match=r"'.*one/a'"):
        data.from_folder(str(tmp_path / "one"))
    with pytest.raises(ValueError, match="`channels`"):
        data.from_folder(str(tmp_path / "one"), channels=2)


def test_from_tfds_mock_data(tmp_path):
    import tensorflow_datasets as tfds

    with tfds.testing.mock_data(num_examples=6):
        ds = data.from_tfds("mnist", split="train", data_dir=str(tmp_path))
        images, labels = next(iter(ds.batch(6)))
    assert images.shape == (6, 28, 28, 1) and images.dtype == tf.float32
    assert labels.dtype == tf.int32
    assert float(tf.reduce_max(images)) <= 1.0 and float(tf.reduce_min(images)) >= 0.0
    with tfds.testing.mock_data(num_examples=6):
        views = data.multiview(
            data.from_tfds("mnist", image_size=(8, 8)),
            RandomResizedCrop(8, 8, seed=0),
            batch_size=3,
        )
        v, _ = next(iter(views))
    assert v.shape == (3, 2, 8, 8, 1)


def test_from_tfds_passes_data_dir(monkeypatch, tmp_path):
    import tensorflow_datasets as tfds

    seen = {}

    def fake_load(name, split, data_dir, download, **kwargs):
        seen.update(name=name, data_dir=data_dir)
        return tf.data.Dataset.from_tensors({"image": tf.zeros((4, 4, 3), tf.uint8)})

    monkeypatch.setattr(tfds, "load", fake_load)
    ds = data.from_tfds("cifar10", data_dir=str(tmp_path))
    assert seen == {"name": "cifar10", "data_dir": str(tmp_path)}
    assert ds.element_spec.shape == (4, 4, 3)  # no label feature: images only


# -- multiview ---------------------------------------------------------------------


def test_multiview_shapes_and_labels(arrays):
    x, y = arrays
    ds = data.multiview((x, y), simclr_augmentation(12, seed=0), views=2, batch_size=8, seed=0)
    batches = list(ds.as_numpy_iterator())
    assert len(batches) == 5
    views, labels = batches[0]
    assert views.shape == (8, 2, 12, 12, 3) and views.dtype == np.float32
    assert labels.shape == (8,) and labels.dtype == np.int32
    assert 0.0 <= views.min() and views.max() <= 1.0
    assert not np.allclose(views[:, 0], views[:, 1])
    assert sorted(np.concatenate([b[1] for b in batches]).tolist()) == sorted(y.tolist())


def test_multiview_without_labels_and_dict_elements(arrays):
    x, y = arrays
    views = next(iter(data.multiview(x, RandomResizedCrop(6, 6), views=3, batch_size=4)))
    assert views.shape == (4, 3, 6, 6, 3)
    ds = tf.data.Dataset.from_tensor_slices({"image": x, "label": y})
    views, labels = next(iter(data.multiview(ds, RandomResizedCrop(6, 6), batch_size=4)))
    assert views.shape == (4, 2, 6, 6, 3) and labels.dtype == tf.int32


def test_multiview_multi_crop_tuple(arrays):
    x, _ = arrays
    aug = multi_crop_augmentation(12, 6, num_local=2, seed=0)
    out = next(iter(data.multiview(x, aug, views=None, batch_size=4)))
    assert [tuple(v.shape) for v in out] == [(4, 12, 12, 3)] * 2 + [(4, 6, 6, 3)] * 2


def test_multiview_deterministic(arrays):
    x, y = arrays

    def build():
        return data.multiview(
            (x, y), simclr_augmentation(12, seed=3), batch_size=8, seed=1, deterministic=True
        )

    a = list(build().as_numpy_iterator())
    b = list(build().as_numpy_iterator())
    for (va, la), (vb, lb) in zip(a, b, strict=True):
        np.testing.assert_array_equal(la, lb)
        np.testing.assert_allclose(va, vb, atol=1e-6)


def test_multiview_bad_input(arrays):
    x, y = arrays
    mixed = tf.data.Dataset.from_generator(
        lambda: iter([np.zeros((4, 4, 3), "float32"), np.zeros((5, 5, 3), "float32")]),
        output_signature=tf.TensorSpec((None, None, 3), tf.float32),
    )
    with pytest.raises(ValueError, match="image_size"):
        data.multiview(mixed, RandomResizedCrop(4, 4), batch_size=2)
    with pytest.raises(ValueError, match="`batch_size`"):
        data.multiview((x, y), RandomResizedCrop(4, 4), batch_size=0)
    with pytest.raises(ValueError, match="`views`"):
        data.multiview((x, y), RandomResizedCrop(4, 4), views=0, batch_size=2)
    with pytest.raises(ValueError, match="`augmenter`"):
        data.multiview((x, y), None, batch_size=2)
    with pytest.raises(ValueError, match="`data`"):
        data.multiview("images/", RandomResizedCrop(4, 4), batch_size=2)


# -- class_balanced -----------------------------------------------------------------


def test_class_balanced_p_by_k(rng):
    x = rng.uniform(size=(60, 4, 4, 1)).astype("float32")
    y = rng.permutation(np.concatenate([np.full(n, c) for c, n in enumerate([5, 9, 12, 15, 19])]))
    ds = data.class_balanced(x, y, classes_per_batch=3, examples_per_class=4, seed=0, steps=20)
    seen = set()
    batches = list(ds.as_numpy_iterator())
    assert len(batches) == 20
    for images, labels in batches:
        assert images.shape == (12, 4, 4, 1) and labels.shape == (12,)
        classes, counts = np.unique(labels, return_counts=True)
        assert len(classes) == 3 and np.all(counts == 4)
        # Images are the ones of their label, and distinct within the batch.
        flat = images.reshape(12, -1)
        idx = [int(np.flatnonzero((x.reshape(60, -1) == f).all(1))[0]) for f in flat]
        assert len(set(idx)) == 12
        np.testing.assert_array_equal(y[idx], labels)
        seen.update(classes.tolist())
    assert seen == {0, 1, 2, 3, 4}
    again = list(
        data.class_balanced(x, y, classes_per_batch=3, examples_per_class=4, seed=0, steps=20)
    )
    for (_, la), (_, lb) in zip(batches, again, strict=True):
        np.testing.assert_array_equal(la, lb.numpy())


def test_class_balanced_from_dataset_with_views(arrays):
    x, y = arrays
    ds = data.class_balanced(
        data.from_arrays(x, y),
        classes_per_batch=2,
        examples_per_class=3,
        augmenter=RandomResizedCrop(8, 8, seed=0),
        views=2,
        steps=2,
    )
    views, labels = next(iter(ds))
    assert views.shape == (6, 2, 8, 8, 3) and labels.shape == (6,)


def test_class_balanced_bad_input(arrays):
    x, y = arrays
    with pytest.raises(ValueError, match=r"`examples_per_class`=9.*smallest class"):
        data.class_balanced(x, y, classes_per_batch=2, examples_per_class=9)
    with pytest.raises(ValueError, match="`classes_per_batch`"):
        data.class_balanced(x, y, classes_per_batch=6, examples_per_class=2)
    with pytest.raises(ValueError, match="`classes_per_batch`"):
        data.class_balanced(x, y, classes_per_batch=0, examples_per_class=2)
    with pytest.raises(ValueError, match="`y`"):
        data.class_balanced(x, classes_per_batch=2, examples_per_class=2)
