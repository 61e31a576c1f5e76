"""Export a trained embedding model for TF Serving (SavedModel) and phones (TFLite).

Trains SimCLR on scikit-learn's digits (a short run), then with `tfcontrast.export`:

1. `export.saved_model` writes `--out/saved_models/digits/<version>/`, the layout TF
   Serving loads, with two signatures: `serving_default` (float images -> L2-normalised
   `embedding`) and `serving_bytes` (PNG/JPEG bytes -> `embedding`). The export is
   loaded back and checked against the Keras model before it is put in place.
2. The SavedModel is called the way a server would call it, on float images and on
   PNG bytes, and the command lines to serve it with TF Serving are printed.
3. `export.tflite` converts it to a float32 and a full-integer (int8) TFLite file,
   checked with ai-edge-litert; `export.run_tflite` embeds the held-out digits with
   each file, and kNN accuracy shows what the quantized model keeps.

    python examples/export_serving.py --out=runs/export
    python examples/export_serving.py --smoke --out=/tmp/export    # tests
"""

import os

import _digits
import numpy as np
import tensorflow as tf

from tfcontrast import export
from tfcontrast.evaluation import knn_accuracy
from tfcontrast.layers import ProjectionHead, digits_augmentation
from tfcontrast.models import ContrastiveModel, algorithms


def flags(parser):
    parser.add_argument("--out", default="runs/export", help="output directory")


def main(argv=None):
    args = _digits.parse_args(__doc__, argv, epochs=40, extra=flags)
    data = x_train, y_train, x_test, y_test = _digits.load(args)
    model = ContrastiveModel(
        _digits.backbone(args),
        projector=ProjectionHead(hidden_dims=(256,), output_dim=64),
        algorithm=algorithms.SimCLR(temperature=0.2),
        augmentation=digits_augmentation(8, seed=args.seed),  # not exported: training only
    )
    _digits.train(model, data, args)

    def knn(embed):
        return knn_accuracy(embed(x_train), y_train, embed(x_test), y_test, k=20)

    keras_knn = knn(lambda x: model.predict(x, verbose=0))

    # 1. SavedModel for TF Serving, checked against the Keras model on real digits.
    report = export.saved_model(
        model, os.path.join(args.out, "saved_models", "digits"), sample_data=x_test
    )
    print(report.summary())

    # 2. Call it as TF Serving would (gRPC/REST reach these same signatures).
    served = tf.saved_model.load(report.path)
    from_floats = served.signatures["serving_default"](images=tf.constant(x_test[:4]))
    pngs = [tf.io.encode_png(tf.constant(np.uint8(im * 255))) for im in x_test[:4]]
    from_png = served.signatures["serving_bytes"](image_bytes=tf.stack(pngs))
    a, b = from_floats["embedding"].numpy(), from_png["embedding"].numpy()
    print(f"embedding {a.shape}; float vs PNG input, cosine >= {np.min(np.sum(a * b, 1)):.4f}")
    base = os.path.abspath(os.path.dirname(report.path))
    print(
        "Serve it with:\n"
        f"  docker run -p 8501:8501 -v {base}:/models/digits -e MODEL_NAME=digits "
        "tensorflow/serving\n"
        '  curl -d \'{"signature_name": "serving_bytes", "instances": '
        '[{"image_bytes": {"b64": "<base64 PNG>"}}]}\' '
        "localhost:8501/v1/models/digits:predict"
    )

    # 3. TFLite, float32 and int8 (calibrated on training digits).
    results = {"saved_model_path": report.path, "saved_model_cosine_min": report.cosine_min}
    print(f"kNN accuracy (k=20), Keras model: {keras_knn:.3f}")
    results["keras_knn_accuracy"] = keras_knn
    for quantization in (None, "int8"):
        name = quantization or "float32"
        path = os.path.join(args.out, f"digits_{name}.tflite")
        tfl = export.tflite(
            report.path,
            path,
            quantization=quantization,
            representative_data=x_train,
            sample_data=x_test,
            overwrite=True,
            # A smoke model is barely trained: its neighbours are near-ties that int8
            # rounding can swap, so only the cosine threshold is kept strict there.
            min_top1=0.5 if args.smoke else None,
        )
        accuracy = knn(lambda x, p=path: export.run_tflite(p, x))
        size = os.path.getsize(path) / 1024
        print(f"kNN accuracy, TFLite {name} ({size:.0f} KiB): {accuracy:.3f}; {tfl.summary()}")
        results[f"tflite_{name}_path"] = path
        results[f"tflite_{name}_knn_accuracy"] = accuracy
    return results


if __name__ == "__main__":
    main()
