#!/usr/bin/env python3
"""Reproduces the "Calibration and accuracy" table of docs/QUANTIZATION.md.

Usage: scripts/quantization_accuracy.py KESTREL_BIN MODELS_DIR

For mnist5k_cnn and digits_student_scratch (calibrated on the first 200 training samples, scored
by test accuracy) and resnet18 (random weights; calibrated on 32 samples of
numpy.random.default_rng(0).standard_normal((32, 3, 224, 224)), scored by the cosine of its
logits on its bundle's input to the float model's), every `kestrel quantize --method` writes a
QDQ ONNX model, which is scored three ways: Kestrel at `--pipeline O1` (QDQ computed as float
ops), Kestrel at `--pipeline O2` (folded into integer kernels) and onnxruntime. Beside them,
onnxruntime's own quantize_static (QDQ, per channel, MinMax, u8 activations / s8 weights) on
the same calibration samples, run by onnxruntime.
"""
import contextlib, os, subprocess, sys, tempfile
import numpy as np
import onnxruntime as ort

kestrel, models = sys.argv[1], sys.argv[2]
METHODS = ["minmax", "percentile", "entropy", "mse"]


def calib_first_200(train):
    return lambda: np.load(f"{models}/{train}")[:200].astype(np.float32)


def calib_normal_32():
    return np.random.default_rng(0).standard_normal((32, 3, 224, 224)).astype(np.float32)


def test_set(x, y):
    def load():
        return (np.load(f"{models}/{x}").astype(np.float32), np.load(f"{models}/{y}"))
    return load


def resnet_test():
    return np.load(f"{models}/torchvision/resnet18.io.npz")["input"].astype(np.float32), None


# label, model, calibration samples, (test inputs, labels or None for the logits cosine)
CASES = [
    ("mnist5k_cnn", "mnist5k/mnist5k_cnn.onnx", calib_first_200("mnist5k/mnist5k_train_x.npy"),
     test_set("mnist5k/mnist5k_test_x.npy", "mnist5k/mnist5k_test_y.npy")),
    ("digits_student_scratch", "digits/digits_student_scratch.onnx",
     calib_first_200("digits/digits_train_x.npy"),
     test_set("digits/digits_test_x.npy", "digits/digits_test_y.npy")),
    ("resnet18", "torchvision/resnet18.onnx", calib_normal_32, resnet_test),
]


def kestrel_logits(model, x, pipeline, tmp):
    np.save(f"{tmp}/x.npy", x)
    out = f"{tmp}/out"
    subprocess.run(["rm", "-rf", out], check=True)
    subprocess.run([kestrel, "run", model, "--pipeline", pipeline, "--input", f"{tmp}/x.npy",
                    "--output-dir", out], check=True)
    (name,) = os.listdir(out)
    return np.load(f"{out}/{name}")


def ort_logits(model, x):
    s = ort.InferenceSession(model)
    name = s.get_inputs()[0].name
    return np.concatenate([s.run(None, {name: x[i:i + 1]})[0] for i in range(len(x))])


def ort_quantize(model, calib, out):
    from onnxruntime.quantization import (CalibrationDataReader, QuantFormat, QuantType,
                                          quantize_static)
    name = ort.InferenceSession(model).get_inputs()[0].name

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.it = iter(calib[i:i + 1] for i in range(len(calib)))

        def get_next(self):
            b = next(self.it, None)
            return None if b is None else {name: b}

    with contextlib.redirect_stdout(sys.stderr):  # its progress messages
        quantize_static(model, out, Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)


def score(logits, y, reference):
    if y is not None:
        return f"{(logits.argmax(1) == y).sum()}"
    a, b = logits.ravel().astype(np.float64), reference.ravel().astype(np.float64)
    return f"{a @ b / np.linalg.norm(a) / np.linalg.norm(b):.5f}"


print("| model | float | " + " | ".join(METHODS) + " | onnxruntime quantizer (minmax) |")
print("|---|---|" + "---|" * len(METHODS) + "---|")
for label, model, calib_of, test_of in CASES:
    model = f"{models}/{model}"
    calib = calib_of()
    x, y = test_of()
    with tempfile.TemporaryDirectory() as tmp:
        np.save(f"{tmp}/calib.npy", calib)
        float_logits = kestrel_logits(model, x, "O1", tmp)
        ort_float_logits = ort_logits(model, x)
        what = f"{len(y)} test images, correct" if y is not None else "logits cosine to float"
        row = [f"{label} ({what}; Kestrel O1 / O2 / onnxruntime)", score(float_logits, y, float_logits)]
        for method in METHODS:
            q = f"{tmp}/{method}.onnx"
            subprocess.run([kestrel, "quantize", model, "--calib", f"{tmp}/calib.npy", "--method",
                            method, "-o", q], check=True, stderr=subprocess.DEVNULL)
            cells = [score(kestrel_logits(q, x, p, tmp), y, float_logits) for p in ["O1", "O2"]]
            cells.append(score(ort_logits(q, x), y, ort_float_logits))
            row.append(" / ".join(cells))
        out = f"{tmp}/ort.int8.onnx"
        ort_quantize(model, calib, out)
        row.append(score(ort_logits(out, x), y, ort_float_logits))
        print("| " + " | ".join(row) + " |", flush=True)
