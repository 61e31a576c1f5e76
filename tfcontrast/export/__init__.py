"""Deployment: SavedModels for TF Serving and TFLite models for edge devices.

Every export is checked against the Keras model before it is put in place: the exported
artifact is loaded back, run on a sample, and compared with the Keras embeddings (cosine
similarity and agreement of top-1 neighbours, `ParityReport`). Below threshold, the export
raises `ParityError` and leaves nothing behind.

- `saved_model(model, "saved_models/NAME")` writes `saved_models/NAME/VERSION/` (the TF
  Serving layout) with two signatures:

  - `serving_default`: input `images`, float32 `(batch, H, W, C)` in the model's input
    convention (dynamic batch); output `embedding`, float32 `(batch, D)`, L2-normalized.
  - `serving_bytes`: input `image_bytes`, a batch of encoded JPEG/PNG/GIF/BMP strings
    (REST clients send them as `{"b64": ...}`); each is decoded, resized to `(H, W)` with
    bilinear interpolation, multiplied by `pixel_scale` (1/255: pixels in [0, 1]) and
    served like `serving_default`; output `embedding`.

  The optional `preprocessing` (a callable or Keras layer, e.g. the normalization the
  model was trained with) is baked into both signatures. The parity report is written to
  `VERSION/assets.extra/tfcontrast_parity.json` (TF Serving ignores `assets.extra/`
  except for warm-up files).
- `tflite(model_or_saved_model_path, "model.tflite", quantization=None | "float16" |
  "dynamic" | "int8", representative_data=...)` converts the `serving_default` signature
  and writes the report next to the file (`model.parity.json`).
- `parity_report(model, exported_path, images)` checks an existing export again;
  `load_report(path)` reads the report stored with it.

This package needs TensorFlow and `ai-edge-litert` (to check and run TFLite files), both
installed with tfcontrast; it is not imported by `import tfcontrast` until first used.

Layout, one job a module: `_parity` (the parity numbers and report), `_checks` (input
checks), `_signatures` (the serving signatures), `_saved_model` and `_tflite` (the two
formats), `_publish` (staging folders and atomic publishing), `_verify` (checking an
existing export).

Example:

```python
from tfcontrast import export

report = export.saved_model(model, "saved_models/digits")          # .../digits/1
print(report.cosine_min, report.path)
export.tflite(model, "digits_int8.tflite", quantization="int8",
              representative_data=train_images[:200])
```
"""

from tfcontrast.export._parity import (
    THRESHOLDS,
    ParityError,
    ParityReport,
    compare_embeddings,
)
from tfcontrast.export._publish import REPORT_NAME
from tfcontrast.export._saved_model import saved_model
from tfcontrast.export._signatures import (
    BYTES_INPUT_NAME,
    BYTES_SIGNATURE,
    IMAGES_INPUT_NAME,
    OUTPUT_NAME,
)
from tfcontrast.export._tflite import run_tflite, tflite
from tfcontrast.export._verify import load_report, parity_report

__all__ = [
    "OUTPUT_NAME",
    "BYTES_INPUT_NAME",
    "BYTES_SIGNATURE",
    "IMAGES_INPUT_NAME",
    "REPORT_NAME",
    "THRESHOLDS",
    "ParityError",
    "ParityReport",
    "compare_embeddings",
    "load_report",
    "parity_report",
    "run_tflite",
    "saved_model",
    "tflite",
]
