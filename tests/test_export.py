"""Tests for `tfcontrast.export`: SavedModels for TF Serving and TFLite files.

The exports are loaded the way deployments load them: in a fresh Python process that
never imports tfcontrast, through `saved_model_cli run`, from a TF Serving
`PredictRequest` and from the REST `{"instances": ...}` JSON form, and in ai-edge-litert.
"""

import base64
import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf
from sklearn.datasets import load_digits

from tfcontrast import export

pytestmark = pytest.mark.tf_only(reason="SavedModel / TFLite export is TensorFlow-only")

PYTHON = sys.executable
SAVED_MODEL_CLI = str(Path(sys.executable).with_name("saved_model_cli"))
ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": ""}


# -- fixtures ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def digits():
    data = load_digits()
    images = (data.images / 16.0).astype("float32")[..., None]
    return images[:1500], data.target[:1500], images[1500:]


@pytest.fixture(scope="module")
def embedder(digits):
    """A small ConvNet trained a few epochs on digits; its 32-d features are served."""
    x_train, y_train, _ = digits
    keras.utils.set_random_seed(0)
    layers = keras.layers
    features = keras.Sequential(
        [
            keras.Input((8, 8, 1), name="images"),
            layers.Conv2D(16, 3, padding="same", activation="relu"),
            layers.Conv2D(32, 3, strides=2, padding="same", activation="relu"),
            layers.Flatten(),
            layers.Dense(32),
        ],
        name="digits_embedder",
    )
    classifier = keras.Sequential([features, layers.Dense(10)])
    classifier.compile(
        keras.optimizers.Adam(3e-3),
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    classifier.fit(x_train, y_train, epochs=10, batch_size=64, verbose=0)
    return features


def keras_embeddings(model, images, preprocessing=None):
    x = images if preprocessing is None else preprocessing(images)
    y = np.asarray(model(x, training=False), np.float64)
    return y / np.linalg.norm(y, axis=1, keepdims=True)


@pytest.fixture(scope="module")
def exported(embedder, digits, tmp_path_factory):
    base = tmp_path_factory.mktemp("serving") / "saved_models" / "digits"
    report = export.saved_model(embedder, base, sample_data=digits[2])
    return base, report


@pytest.fixture(scope="module")
def loaded(exported):
    return tf.saved_model.load(exported[1].path)


@pytest.fixture(scope="module")
def tflite_files(embedder, digits, tmp_path_factory):
    x_train, _, x_test = digits
    folder = tmp_path_factory.mktemp("tflite")
    reports = {}
    for quantization in (None, "float16", "dynamic", "int8"):
        reports[quantization] = export.tflite(
            embedder,
            folder / f"digits_{quantization or 'float32'}.tflite",
            quantization=quantization,
            representative_data=x_train,
            sample_data=x_test,
        )
    return reports


def png_bytes(images):
    pixels = np.round(images * 255).astype(np.uint8)
    return [tf.io.encode_png(p).numpy() for p in pixels]


def leftovers(folder: Path):
    """Temporary files or directories an export could have left behind."""
    return [p for p in folder.rglob("*") if ".tmp" in p.name]


# -- SavedModel ----------------------------------------------------------------------


def test_saved_model_layout_versions_and_report(exported, embedder, digits):
    base, report = exported
    assert report.path == str(base / "1")
    assert report.passed and report.format == "saved_model"
    assert report.cosine_min >= 0.9999 and report.top1_agreement >= 0.99
    assert report.details["serving_bytes"]["cosine_min"] >= 0.9999
    assert report.samples == len(digits[2])
    version = base / "1"
    assert (version / "saved_model.pb").exists() and (version / "variables").is_dir()
    stored = export.load_report(version)
    assert stored["cosine_min"] == pytest.approx(report.cosine_min)
    assert stored["path"] == str(version)
    # The next export gets the next version; an existing one is never overwritten.
    second = export.saved_model(embedder, base, sample_data=digits[2][:32])
    assert second.path == str(base / "2")
    before = sorted(p.name for p in base.iterdir())
    mtime = (version / "saved_model.pb").stat().st_mtime_ns
    with pytest.raises(FileExistsError, match="version 1 exists"):
        export.saved_model(embedder, base, version=1)
    assert sorted(p.name for p in base.iterdir()) == before == ["1", "2"]
    assert (version / "saved_model.pb").stat().st_mtime_ns == mtime
    assert not leftovers(base)


def test_fresh_process_without_tfcontrast(exported, embedder, digits, tmp_path):
    _, _, x_test = digits
    images = x_test[:16]
    np.save(tmp_path / "images.npy", images)
    for i, encoded in enumerate(png_bytes(images)):
        (tmp_path / f"{i}.png").write_bytes(encoded)
    script = textwrap.dedent(
        """
        import json, sys
        import numpy as np
        import tensorflow as tf

        path, folder = sys.argv[1], sys.argv[2]
        model = tf.saved_model.load(path)
        images = np.load(folder + "/images.npy")
        out = model.signatures["serving_default"](images=tf.constant(images))
        encoded = [open(f"{folder}/{i}.png", "rb").read() for i in range(len(images))]
        out_bytes = model.signatures["serving_bytes"](image_bytes=tf.constant(encoded))
        np.save(folder + "/embedding.npy", out["embedding"].numpy())
        np.save(folder + "/embedding_bytes.npy", out_bytes["embedding"].numpy())
        print(json.dumps({
            "signatures": sorted(model.signatures.keys()),
            "tfcontrast": any(m.startswith("tfcontrast") for m in sys.modules),
            "keras": "keras" in sys.modules,
        }))
        """
    )
    result = subprocess.run(
        [PYTHON, "-c", script, exported[1].path, str(tmp_path)],
        capture_output=True,
        text=True,
        env=ENV,
        cwd=tmp_path,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    info = json.loads(result.stdout.strip().splitlines()[-1])
    assert info["signatures"] == ["serving_bytes", "serving_default"]
    assert not info["tfcontrast"]
    expected = keras_embeddings(embedder, images)
    np.testing.assert_allclose(np.load(tmp_path / "embedding.npy"), expected, atol=1e-5)
    np.testing.assert_allclose(
        np.linalg.norm(np.load(tmp_path / "embedding.npy"), axis=1), 1.0, atol=1e-5
    )
    # PNG pixels are rounded to 1/255: the same images as floats give the same embedding.
    rounded = np.round(images * 255) / 255
    np.testing.assert_allclose(
        np.load(tmp_path / "embedding_bytes.npy"),
        keras_embeddings(embedder, rounded.astype("float32")),
        atol=1e-5,
    )


def test_saved_model_cli_run(exported, loaded, embedder, digits, tmp_path):
    images = digits[2][:4]
    np.save(tmp_path / "images.npy", images)
    path = exported[1].path
    for name, spec in (("serving_default", tf.float32), ("serving_bytes", tf.string)):
        signature = loaded.signatures[name]
        (input_spec,) = signature.structured_input_signature[1].values()
        assert input_spec.dtype == spec and input_spec.shape[0] is None
        assert list(signature.structured_outputs) == ["embedding"]
    run = subprocess.run(
        [
            SAVED_MODEL_CLI,
            "run",
            "--dir",
            path,
            "--tag_set",
            "serve",
            "--signature_def",
            "serving_default",
            "--inputs",
            f"images={tmp_path / 'images.npy'}",
            "--outdir",
            str(tmp_path / "out"),
        ],
        capture_output=True,
        text=True,
        env=ENV,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    np.testing.assert_allclose(
        np.load(tmp_path / "out" / "embedding.npy"), keras_embeddings(embedder, images), atol=1e-5
    )


def test_tf_serving_predict_request(loaded, embedder, digits):
    from tensorflow_serving.apis import predict_pb2

    images = digits[2][:8]
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "digits"
    request.model_spec.signature_name = "serving_default"
    request.inputs["images"].CopyFrom(tf.make_tensor_proto(images))
    wire = request.SerializeToString()
    # What the server does: parse the request, turn the TensorProtos into tensors, run.
    received = predict_pb2.PredictRequest.FromString(wire)
    signature = loaded.signatures[received.model_spec.signature_name]
    inputs = {k: tf.constant(tf.make_ndarray(v)) for k, v in received.inputs.items()}
    outputs = signature(**inputs)
    response = predict_pb2.PredictResponse()
    for name, value in outputs.items():
        response.outputs[name].CopyFrom(tf.make_tensor_proto(value.numpy()))
    embedding = tf.make_ndarray(response.outputs["embedding"])
    np.testing.assert_allclose(embedding, keras_embeddings(embedder, images), atol=1e-5)

    # The bytes signature takes DT_STRING protos of encoded images.
    request = predict_pb2.PredictRequest()
    request.model_spec.signature_name = "serving_bytes"
    request.inputs["image_bytes"].CopyFrom(tf.make_tensor_proto(png_bytes(images), dtype=tf.string))
    received = predict_pb2.PredictRequest.FromString(request.SerializeToString())
    inputs = {k: tf.constant(tf.make_ndarray(v)) for k, v in received.inputs.items()}
    out = loaded.signatures["serving_bytes"](**inputs)["embedding"].numpy()
    np.testing.assert_allclose(out, embedding, atol=2e-2)  # PNG rounds pixels to 1/255


def rest_predict(loaded, body: str):
    """TF Serving's REST row format: `instances` -> the signature's single input."""
    request = json.loads(body)
    signature = loaded.signatures[request.get("signature_name", "serving_default")]
    ((name, spec),) = signature.structured_input_signature[1].items()
    instances = request["instances"]
    if spec.dtype == tf.string:
        values = [base64.b64decode(item["b64"]) for item in instances]
    else:
        values = np.asarray(instances, spec.dtype.as_numpy_dtype)
    outputs = signature(**{name: tf.constant(values)})
    # One output: "predictions" is the list of per-instance values.
    return json.dumps({"predictions": outputs["embedding"].numpy().tolist()})


def test_rest_json_instances_and_b64(loaded, embedder, digits):
    images = digits[2][:5]
    body = json.dumps({"instances": images.tolist()})
    predictions = np.asarray(json.loads(rest_predict(loaded, body))["predictions"])
    expected = keras_embeddings(embedder, images)
    np.testing.assert_allclose(predictions, expected, atol=1e-5)
    body = json.dumps(
        {
            "signature_name": "serving_bytes",
            "instances": [{"b64": base64.b64encode(b).decode()} for b in png_bytes(images)],
        }
    )
    predictions = np.asarray(json.loads(rest_predict(loaded, body))["predictions"])
    rounded = (np.round(images * 255) / 255).astype("float32")
    np.testing.assert_allclose(predictions, keras_embeddings(embedder, rounded), atol=1e-5)


def test_bytes_signature_decodes_jpeg_resizes_and_converts_channels(loaded, embedder):
    # A 16x16 RGB JPEG is decoded to 1 channel and resized to the model's 8x8.
    rgb = np.full((16, 16, 3), 128, np.uint8)
    jpeg = tf.io.encode_jpeg(rgb, quality=100).numpy()
    out = loaded.signatures["serving_bytes"](image_bytes=tf.constant([jpeg]))["embedding"]
    gray = tf.image.resize(tf.image.rgb_to_grayscale(tf.io.decode_jpeg(jpeg)), (8, 8))
    expected = keras_embeddings(embedder, (gray.numpy()[None] / 255.0).astype("float32"))
    np.testing.assert_allclose(out.numpy(), expected, atol=1e-3)


def test_contrastive_model_with_preprocessing(digits, tmp_path):
    from tfcontrast.models import ContrastiveModel, backbones

    keras.utils.set_random_seed(1)
    model = ContrastiveModel(
        backbones.small_convnet((8, 8, 1), width=8, output_dim=16),
        algorithm="simclr",
        augmentation=keras.layers.RandomFlip("horizontal"),
    )
    # No input shape known yet: the error says how to give one.
    with pytest.raises(ValueError, match="input_shape="):
        export.saved_model(model, tmp_path / "cm")
    assert not (tmp_path / "cm").exists()
    normalize = keras.layers.Normalization(mean=0.3, variance=0.1)
    images = digits[2][:40]
    report = export.saved_model(
        model, tmp_path / "cm", input_shape=(8, 8, 1), preprocessing=normalize, sample_data=images
    )
    assert report.passed and report.details["preprocessing"].startswith("Normalization")
    serving = tf.saved_model.load(report.path).signatures["serving_default"]
    out = serving(images=tf.constant(images))["embedding"].numpy()
    # The augmentation does not run at inference; the normalization does.
    expected = keras_embeddings(model, images, preprocessing=normalize)
    np.testing.assert_allclose(out, expected, atol=1e-5)
    without = keras_embeddings(model, images)
    assert np.max(np.abs(out - without)) > 1e-2
    lite = export.tflite(model, tmp_path / "cm.tflite", preprocessing=normalize, sample_data=images)
    assert lite.passed and lite.cosine_min >= 0.9999


# -- TFLite --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "quantization, min_cosine",
    [(None, 0.9999), ("float16", 0.999), ("dynamic", 0.98), ("int8", 0.98)],
)
def test_tflite_parity_and_litert_interpreter(
    tflite_files, embedder, digits, quantization, min_cosine
):
    from ai_edge_litert.interpreter import Interpreter

    report = tflite_files[quantization]
    assert report.passed and report.cosine_min >= min_cosine
    if quantization in ("dynamic", "int8"):
        assert report.top1_agreement >= 0.95
    stored = export.load_report(report.path)
    assert stored["quantization"] == (quantization or "float32")
    # Run one image by hand in the LiteRT interpreter.
    interpreter = Interpreter(model_path=report.path, num_threads=2)
    interpreter.allocate_tensors()
    (inp,), (out,) = interpreter.get_input_details(), interpreter.get_output_details()
    assert inp["dtype"] == np.float32 and out["dtype"] == np.float32
    image = digits[2][:1]
    interpreter.set_tensor(inp["index"], image)
    interpreter.invoke()
    embedding = interpreter.get_tensor(out["index"])
    expected = keras_embeddings(embedder, image)
    assert float(np.sum(embedding * expected)) >= min_cosine
    if quantization == "int8":
        kinds = {t["dtype"] for t in interpreter.get_tensor_details()}
        assert np.int8 in kinds


def test_tflite_sizes(tflite_files):
    size = {q: r.details["bytes"] for q, r in tflite_files.items()}
    assert size["float16"] < 0.6 * size[None]
    assert size["int8"] < 0.35 * size[None] and size["dynamic"] < 0.35 * size[None]
    for report in tflite_files.values():
        assert os.path.getsize(report.path) == report.details["bytes"]
        assert not leftovers(Path(report.path).parent)


def test_tflite_from_saved_model_and_integer_io(exported, digits, tmp_path):
    x_train, _, x_test = digits
    report = export.tflite(
        exported[1].path, tmp_path / "from_sm.tflite", quantization="dynamic", sample_data=x_test
    )
    assert report.passed and report.details["reference"] == exported[1].path
    report = export.tflite(
        exported[1].path,
        tmp_path / "int8_io.tflite",
        quantization="int8",
        representative_data=x_train[:300],
        sample_data=x_test,
        integer_io=True,
        min_top1=0.9,
    )
    assert report.passed and report.cosine_min >= 0.98
    from ai_edge_litert.interpreter import Interpreter

    runner = Interpreter(model_path=report.path).get_signature_runner("serving_default")
    assert runner.get_input_details()["images"]["dtype"] == np.int8
    assert runner.get_output_details()["embedding"]["dtype"] == np.int8


def test_parity_report_on_existing_exports(exported, tflite_files, embedder, digits):
    report = export.parity_report(embedder, exported[1].path, digits[2][:64])
    assert report.passed and report.format == "saved_model"
    report = export.parity_report(
        embedder, tflite_files["int8"].path, digits[2][:64], quantization="int8"
    )
    assert report.format == "tflite" and report.cosine_min >= 0.98


# -- parity numbers --------------------------------------------------------------------


def test_compare_embeddings_against_numpy_reference(rng):
    reference = rng.normal(size=(20, 6))
    exported = reference + 0.05 * rng.normal(size=(20, 6))
    report = export.compare_embeddings(reference, exported, quantization="int8")
    cosines, agree = [], 0
    for i in range(20):
        a, b = reference[i], exported[i]
        cosines.append(a @ b / np.sqrt((a @ a) * (b @ b)))
        best_ref = best_exp = None
        for j in range(20):
            if j == i:
                continue
            s_ref = (
                reference[i]
                @ reference[j]
                / np.linalg.norm(reference[i])
                / np.linalg.norm(reference[j])
            )
            s_exp = (
                exported[i]
                @ exported[j]
                / np.linalg.norm(exported[i])
                / np.linalg.norm(exported[j])
            )
            if best_ref is None or s_ref > best_ref[0]:
                best_ref = (s_ref, j)
            if best_exp is None or s_exp > best_exp[0]:
                best_exp = (s_exp, j)
        agree += best_ref[1] == best_exp[1]
    assert report.cosine_min == pytest.approx(min(cosines))
    assert report.cosine_mean == pytest.approx(np.mean(cosines))
    assert report.top1_agreement == pytest.approx(agree / 20)
    assert (report.min_cosine, report.min_top1) == export.THRESHOLDS["int8"]
    # A permuted export agrees on nothing and fails.
    bad = export.compare_embeddings(reference, reference[::-1])
    assert not bad.passed
    nan = export.compare_embeddings(reference, np.full_like(reference, np.nan))
    assert not nan.passed and nan.cosine_min == -1.0
    with pytest.raises(ValueError, match="quantization"):
        export.compare_embeddings(reference, exported, quantization="int4")
    with pytest.raises(ValueError, match="exported"):
        export.compare_embeddings(reference, exported[:3])


# -- failures leave nothing behind ----------------------------------------------------


def test_parity_failure_leaves_nothing(embedder, digits, tmp_path):
    base = tmp_path / "saved_models" / "digits"
    with pytest.raises(export.ParityError, match="parity check failed") as info:
        export.saved_model(embedder, base, sample_data=digits[2][:16], min_cosine=1.1)
    assert info.value.report.cosine_min > 0.9999 and not info.value.report.passed
    assert not base.exists() and not leftovers(tmp_path)
    # An existing base directory stays, without a partial version.
    base.mkdir(parents=True)
    with pytest.raises(export.ParityError):
        export.saved_model(embedder, base, sample_data=digits[2][:16], min_cosine=1.1)
    assert list(base.iterdir()) == []
    target = tmp_path / "lite" / "digits.tflite"
    with pytest.raises(export.ParityError):
        export.tflite(embedder, target, sample_data=digits[2][:16], min_cosine=1.1)
    assert not target.parent.exists() and not leftovers(tmp_path)


class _Untraceable(keras.Model):
    """Calls NumPy on its input: runs eagerly, cannot be traced into a graph."""

    def __init__(self):
        super().__init__()
        self.dense = keras.layers.Dense(4)

    def call(self, x):
        flat = np.asarray(x).reshape(len(x), -1)
        return self.dense(flat)


def test_untraceable_model_leaves_nothing(tmp_path):
    model = _Untraceable()
    model(np.zeros((1, 8, 8, 1), "float32"))
    base = tmp_path / "saved_models" / "broken"
    with pytest.raises(Exception):  # noqa: B017 - whatever tracing raises propagates
        export.saved_model(model, base, input_shape=(8, 8, 1))
    assert not base.exists() and not leftovers(tmp_path)
    with pytest.raises(Exception):  # noqa: B017
        export.tflite(model, tmp_path / "broken.tflite", input_shape=(8, 8, 1))
    assert not any(tmp_path.iterdir())


def test_bad_inputs(embedder, digits, tmp_path):
    x_train = digits[0]
    target = tmp_path / "bad.tflite"

    class Unbuilt(keras.Model):
        def call(self, x):
            return keras.ops.mean(x, axis=(1, 2))

    with pytest.raises(ValueError, match=r"no known input shape.*input_shape=\(H, W, C\)"):
        export.saved_model(Unbuilt(), tmp_path / "unbuilt")
    with pytest.raises(ValueError, match="input_shape"):
        export.tflite(Unbuilt(), target)
    with pytest.raises(ValueError, match="fully known image shape"):
        export.saved_model(embedder, tmp_path / "x", input_shape=(None, 8, 1))
    with pytest.raises(ValueError, match="representative_data.*is required"):
        export.tflite(embedder, target, quantization="int8")
    with pytest.raises(ValueError, match=r"representative_data.*shape \(N, 8, 8, 1\)"):
        export.tflite(
            embedder, target, quantization="int8", representative_data=np.zeros((10, 8, 8, 3))
        )
    with pytest.raises(ValueError, match="representative_data.*dtype uint8"):
        export.tflite(
            embedder,
            target,
            quantization="int8",
            representative_data=(x_train[:10] * 255).astype(np.uint8),
        )
    dataset = tf.data.Dataset.from_tensor_slices(
        ((x_train[:10] * 255).astype(np.int32), np.zeros(10))
    )
    with pytest.raises(ValueError, match="representative_data.*int32"):
        export.tflite(embedder, target, quantization="int8", representative_data=dataset)
    with pytest.raises(ValueError, match="quantization"):
        export.tflite(embedder, target, quantization="int4")
    with pytest.raises(ValueError, match="integer_io"):
        export.tflite(embedder, target, integer_io=True)
    with pytest.raises(ValueError, match="version"):
        export.saved_model(embedder, tmp_path / "v", version=-1)
    with pytest.raises(ValueError, match="sample_data"):
        export.saved_model(embedder, tmp_path / "s", sample_data=np.zeros((4, 9, 9, 1)))
    with pytest.raises(ValueError, match="pixel_scale"):
        export.saved_model(embedder, tmp_path / "p", pixel_scale=0)
    assert not any(tmp_path.iterdir())
    # A tf.data pipeline of (images, labels) batches is accepted as representative data.
    good = tf.data.Dataset.from_tensor_slices((x_train[:300], np.zeros(300))).batch(50)
    report = export.tflite(embedder, target, quantization="int8", representative_data=good)
    assert report.passed and report.details["representative_images"] == 300
    with pytest.raises(FileExistsError, match="overwrite=True"):
        export.tflite(embedder, target)


# -- quantized exports that LiteRT cannot convert or run (issue 23, item 11) -----------


def int8_replacing(model, digits, target):
    """An int8 export that is to replace the file at `target`."""
    x_train, _, x_test = digits
    return export.tflite(
        model,
        target,
        quantization="int8",
        representative_data=x_train[:100],
        sample_data=x_test[:64],
        overwrite=True,
    )


class _FailingQuantizer:
    """TensorFlow's int8 quantizer as it fails on some models."""

    def __init__(self, *args, **kwargs):
        raise RuntimeError("Quantization not yet supported for op: 'SIN'.")


def test_int8_conversion_failure_is_a_parity_error_and_keeps_the_published_file(
    embedder, digits, tmp_path, monkeypatch
):
    target = tmp_path / "lite" / "digits.tflite"
    good = export.tflite(embedder, target, sample_data=digits[2][:64])
    published, stored = target.read_bytes(), export.load_report(target)
    monkeypatch.setattr(tf.lite.experimental, "QuantizationDebugger", _FailingQuantizer)
    with pytest.raises(
        export.ParityError, match=r"int8.*could not be converted.*'SIN'.*quantization="
    ) as info:
        int8_replacing(embedder, digits, target)
    report = info.value.report
    assert not report.passed and report.quantization == "int8" and report.path is None
    assert report.details["stage"] == "convert" and "SIN" in report.details["error"]
    assert report.samples == 64 and report.min_cosine == export.THRESHOLDS["int8"][0]
    assert target.read_bytes() == published and export.load_report(target) == stored
    assert good.passed and not leftovers(tmp_path)


class _FailingInterpreter:
    """LiteRT as it fails on some full-integer models: the file loads, preparing fails."""

    def __init__(self, model_path, num_threads=None):
        self.model_path = model_path

    def get_signature_runner(self, name):
        raise RuntimeError(
            "tensorflow/lite/kernels/kernel_util.cc:338 std::abs(input_product_scale - "
            "bias_scale) <= 1e-6 * std::min(input_product_scale, bias_scale) was not true."
            "Node number 3 (FULLY_CONNECTED) failed to prepare."
        )


def test_int8_file_litert_cannot_run_is_a_parity_error(embedder, digits, tmp_path, monkeypatch):
    import ai_edge_litert.interpreter

    target = tmp_path / "digits_int8.tflite"
    target.write_bytes(b"the version published before")
    monkeypatch.setattr(ai_edge_litert.interpreter, "Interpreter", _FailingInterpreter)
    with pytest.raises(export.ParityError, match=r"int8.*LiteRT could not run.*failed to prepare"):
        int8_replacing(embedder, digits, target)
    assert target.read_bytes() == b"the version published before"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["digits_int8.tflite"]


# -- staging folders of killed exports --------------------------------------------------

_KILLED_EXPORT = textwrap.dedent(
    """
    import sys, time
    import keras
    from tfcontrast import export
    from tfcontrast.export import _signatures

    def stuck(*args, **kwargs):  # the export is killed while it writes the SavedModel
        print("staging", flush=True)
        time.sleep(600)

    _signatures.write_archive = stuck
    model = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Flatten(), keras.layers.Dense(4)])
    export.saved_model(model, sys.argv[1])
    """
)


def staging_folders(folder: Path):
    return sorted(p.name for p in folder.iterdir() if p.name.startswith(".tmp-"))


def test_staging_folders_of_killed_exports_are_removed_by_the_next_export(
    embedder, digits, tmp_path
):
    from tfcontrast.export import _publish

    base = tmp_path / "saved_models" / "digits"
    first = export.saved_model(embedder, base, sample_data=digits[2][:32])
    killed = subprocess.Popen(
        [PYTHON, "-c", _KILLED_EXPORT, str(base)], stdout=subprocess.PIPE, text=True, env=ENV
    )
    try:
        assert killed.stdout.readline().strip() == "staging"
    finally:
        killed.kill()
        killed.wait()
    (killed_folder,) = staging_folders(base)
    # A staging folder of an earlier tfcontrast (no owner file), a day old: stale.
    old = base / ".tmp-export-ab12cd34"
    (old / "model").mkdir(parents=True)
    day_ago = time.time() - 2 * 86400
    os.utime(old, (day_ago, day_ago))
    # Kept: the same but recent (it may be a running export), and the user's own things.
    recent = base / ".tmp-export-ef56gh78"
    recent.mkdir()
    (base / ".tmp-export-notes").mkdir()
    (base / ".tmp-export-12345678").write_text("a file, not a staging folder")
    (base / "README").write_text("mine")
    with _publish.Staging(base, _publish.SAVED_MODEL_STAGING) as live:  # a running export
        second = export.saved_model(embedder, base, sample_data=digits[2][:32])
        assert live.path.exists()
    assert second.path == str(base / "2") and first.passed
    assert killed_folder not in staging_folders(base) and not old.exists()
    assert staging_folders(base) == sorted(
        [".tmp-export-ef56gh78", ".tmp-export-notes", ".tmp-export-12345678"]
    )
    assert (base / "README").read_text() == "mine"
    assert export.load_report(base / "1")["cosine_min"] == pytest.approx(first.cosine_min)
    # TFLite exports clean their own folder the same way.
    lite = tmp_path / "lite"
    stale = lite / ".tmp-tflite-zz99yy88"
    (stale / "saved_model").mkdir(parents=True)
    os.utime(stale, (day_ago, day_ago))
    export.tflite(embedder, lite / "digits.tflite", sample_data=digits[2][:32])
    assert not stale.exists() and staging_folders(lite) == []
