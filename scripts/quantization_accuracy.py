#!/usr/bin/env python3
"""Reproduces the "Calibration and accuracy" table of docs/QUANTIZATION.md.

Usage: scripts/quantization_accuracy.py KESTREL_BIN MODELS_DIR
Calibrates mnist5k_cnn and digits_student_scratch on the first 200 training samples with every
`kestrel quantize --method`, runs the QDQ graph with `kestrel run --pipeline O1`, and scores
test accuracy; onnxruntime's quantize_static (QDQ, per channel, MinMax) on the same samples beside.
"""
import os, subprocess, sys, tempfile
import numpy as np

kestrel, models = sys.argv[1], sys.argv[2]
CASES = [
    ("mnist5k_cnn", "mnist5k/mnist5k_cnn.onnx", "mnist5k/mnist5k_train_x.npy",
     "mnist5k/mnist5k_test_x.npy", "mnist5k/mnist5k_test_y.npy"),
    ("digits_student_scratch", "digits/digits_student_scratch.onnx", "digits/digits_train_x.npy",
     "digits/digits_test_x.npy", "digits/digits_test_y.npy"),
]


def kestrel_logits(model, x, tmp):
    np.save(f"{tmp}/x.npy", x)
    out = f"{tmp}/out"
    subprocess.run([kestrel, "run", model, "--pipeline", "O1", "--input", f"{tmp}/x.npy",
                    "--output-dir", out], check=True)
    (name,) = os.listdir(out)
    return np.load(f"{out}/{name}")


def ort_accuracy(model, calib, x, y, tmp):
    import onnxruntime as ort
    from onnxruntime.quantization import (CalibrationDataReader, QuantFormat, QuantType,
                                          quantize_static)
    name = ort.InferenceSession(model).get_inputs()[0].name

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.it = iter(calib[i:i + 1] for i in range(len(calib)))

        def get_next(self):
            b = next(self.it, None)
            return None if b is None else {name: b}

    out = f"{tmp}/ort.int8.onnx"
    quantize_static(model, out, Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
    s = ort.InferenceSession(out)
    logits = np.concatenate([s.run(None, {name: x[i:i + 1]})[0] for i in range(len(x))])
    return (logits.argmax(1) == y).mean()


print("| model | float | minmax | percentile | entropy | mse | onnxruntime (minmax) |")
print("|---|---|---|---|---|---|---|")
for label, model, train, test_x, test_y in CASES:
    model = f"{models}/{model}"
    calib = np.load(f"{models}/{train}")[:200].astype(np.float32)
    x = np.load(f"{models}/{test_x}").astype(np.float32)
    y = np.load(f"{models}/{test_y}")
    with tempfile.TemporaryDirectory() as tmp:
        np.save(f"{tmp}/calib.npy", calib)
        row = [label]
        acc = (kestrel_logits(model, x, tmp).argmax(1) == y)
        row.append(f"{acc.mean() * 100:.1f} % ({acc.sum()}/{len(y)})")
        for method in ["minmax", "percentile", "entropy", "mse"]:
            q = f"{tmp}/{method}.kir"
            subprocess.run([kestrel, "quantize", model, "--calib", f"{tmp}/calib.npy", "--method",
                            method, "-o", q], check=True, stderr=subprocess.DEVNULL)
            acc = (kestrel_logits(q, x, tmp).argmax(1) == y)
            row.append(f"{acc.mean() * 100:.1f} % ({acc.sum()}/{len(y)})")
        try:
            a = ort_accuracy(model, calib, x, y, tmp)
            row.append(f"{a * 100:.1f} % ({round(a * len(y))}/{len(y)})")
        except ImportError:
            row.append("(onnxruntime not installed)")
        print("| " + " | ".join(row) + " |", flush=True)
