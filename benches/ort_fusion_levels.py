#!/usr/bin/env python3
"""onnxruntime's own fusion gain on the shared models, for comparison with Kestrel's O1 -> O2.

    python3 benches/ort_fusion_levels.py [--models DIR] [--iters 30]

For each model, one thread, the median latency with `graph_optimization_level` BASIC (constant
folding and redundant-node removal), EXTENDED (adds onnxruntime's fusions) and ALL (adds its memory
layout changes), and the ratios to BASIC. Needs `pip install onnxruntime numpy`.
"""
import argparse
import os
import time

import numpy as np
import onnxruntime as ort

LEVELS = [
    ("basic", ort.GraphOptimizationLevel.ORT_ENABLE_BASIC),
    ("extended", ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED),
    ("all", ort.GraphOptimizationLevel.ORT_ENABLE_ALL),
]


def median_ms(path, level, iters):
    so = ort.SessionOptions()
    so.graph_optimization_level = level
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    s = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
    i = s.get_inputs()[0]
    x = np.random.default_rng(0).random((1, 3, 224, 224), dtype=np.float32)
    for _ in range(5):
        s.run(None, {i.name: x})
    ts = []
    for _ in range(iters):
        t = time.perf_counter()
        s.run(None, {i.name: x})
        ts.append(time.perf_counter() - t)
    return float(np.median(ts)) * 1e3


def main():
    ap = argparse.ArgumentParser()
    # Default: KESTREL_MODELS, else the shared models beside the clone (as benches/compare.py).
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    ap.add_argument("--models", default=os.environ.get("KESTREL_MODELS", os.path.join(root, "..", "shared", "models")))
    ap.add_argument("--iters", type=int, default=30)
    ap.add_argument("names", nargs="*", default=["efficientnet_b0", "vit_tiny_16"])
    a = ap.parse_args()
    for name in a.names:
        path = f"{a.models}/torchvision/{name}.onnx"
        ms = {k: median_ms(path, lvl, a.iters) for k, lvl in LEVELS}
        cells = ", ".join(f"{k} {v:.2f} ms" for k, v in ms.items())
        print(
            f"{name}: {cells}; extended/basic {ms['extended'] / ms['basic']:.2f}, "
            f"all/basic {ms['all'] / ms['basic']:.2f}"
        )


if __name__ == "__main__":
    main()
