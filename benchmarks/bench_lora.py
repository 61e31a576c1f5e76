"""LoRA vs full contrastive fine-tuning: how much of the original task is kept.

Runs `examples/lora_finetuning.py` (supervised pretraining on digits 0-4, SimCLR
fine-tuning on digits 5-9, fully or with LoRA) and writes its numbers to
`benchmarks/results/lora.json`.

    python benchmarks/bench_lora.py
    python benchmarks/bench_lora.py --smoke
"""

import importlib.util
import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    spec = importlib.util.spec_from_file_location(
        "lora_finetuning", ROOT / "examples" / "lora_finetuning.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    if "--output" not in argv and "--smoke" not in argv:
        argv += ["--output", str(ROOT / "benchmarks" / "results" / "lora.json")]
    return module.main(argv)


if __name__ == "__main__":
    main()
