#!/usr/bin/env python3
"""Runs ONNX models in onnxruntime for Kestrel's export tests.

    ort_run.py MODEL INPUTS.npz OUTPUTS.npz [MODEL INPUTS.npz OUTPUTS.npz ...]

Each model is first validated by `onnx.checker.check_model(full_check=True)` (which includes
strict shape inference), then run once on one thread by the CPU execution provider with the
arrays of INPUTS.npz named after its graph inputs; the outputs are written to OUTPUTS.npz under
the graph output names.

Every model is tried; exit status: 0 on success, 1 when some model fails to check, load or run
(one message per failure names the model),
3 when onnx, onnxruntime or numpy is missing (the caller decides whether that skips or fails).
"""

import sys

try:
    import numpy as np
    import onnx
    import onnxruntime as ort
except ImportError as e:  # pragma: no cover - depends on the machine
    print(f"ort_run.py: {e}", file=sys.stderr)
    sys.exit(3)


def run(model: str, inputs: str, outputs: str) -> None:
    onnx.checker.check_model(model, full_check=True)
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
    arrays = dict(np.load(inputs))
    feeds = {}
    for i in session.get_inputs():
        if i.name not in arrays:
            raise ValueError(f"{inputs} has no array named {i.name!r}")
        feeds[i.name] = arrays[i.name]
    results = session.run(None, feeds)
    names = [o.name for o in session.get_outputs()]
    np.savez(outputs, **dict(zip(names, results)))


def main() -> int:
    args = sys.argv[1:]
    if not args or len(args) % 3 != 0:
        print(__doc__, file=sys.stderr)
        return 2
    failed = 0
    for k in range(0, len(args), 3):
        model, inputs, outputs = args[k : k + 3]
        try:
            run(model, inputs, outputs)
        except Exception as e:  # every failure names the model
            print(f"ort_run.py: {model}: {type(e).__name__}: {e}", file=sys.stderr)
            failed += 1
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
