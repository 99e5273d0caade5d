#!/usr/bin/env python3
"""Side-by-side latency of Kestrel, onnxruntime and (when installed) tract on the same models.

    python3 benches/compare.py [--models DIR] [--threads 1 2] [--rounds 3] [--iters 30]
                               [--backend jit|interp] [--only NAME ...] [--kestrel BIN]
                               [--baseline BIN] [--quantized NAME ...]

Runtimes are interleaved round by round so that drift on a shared machine hits all of them alike;
each cell is the median over rounds of each round's median latency (milliseconds for one
inference). Ratios are Kestrel / onnxruntime (lower is better for Kestrel). `--baseline BIN` adds another Kestrel
build (for example one from before a change) as one more runtime in the same interleaved rounds, and
the ratio Kestrel / baseline.

Int8 rows: the shared onnxruntime-quantized `resnet18.int8.onnx` (through both runtimes), and for
each `--quantized` model (default resnet18, mobilenet_v2) a QDQ model written by `kestrel quantize`
(minmax, 8 calibration samples of `numpy.random.default_rng(0).standard_normal`) into a temporary
folder, also through both runtimes; the `.so` sizes of the float and int8 builds are printed.

Needs `pip install onnxruntime numpy` and a release build of kestrel (`cargo build --release`).
tract is used when a `tract` binary is on PATH (`cargo install tract-cli`, see BASELINES.md), fed
the same inputs as onnxruntime, at 1 thread only (the crates.io build has no thread pool; `n/a`).
"""
import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_MODELS = [
    "digits/digits_cnn.b1.onnx",
    "torchvision/resnet18.onnx",
    "torchvision/mobilenet_v2.onnx",
    "torchvision/mobilenet_v3_small.onnx",
    "torchvision/efficientnet_b0.onnx",
    "torchvision/squeezenet1_1.onnx",
    "torchvision/vit_tiny_16.onnx",
    "torchvision/resnet18.int8.onnx",
]


def ort_median(path, threads, iters):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
    feeds = random_feeds(path)
    for _ in range(3):
        sess.run(None, feeds)
    times = []
    for _ in range(iters):
        t = time.perf_counter()
        sess.run(None, feeds)
        times.append((time.perf_counter() - t) * 1e3)
    return statistics.median(times)


def kestrel_median(kestrel, path, threads, iters, backend):
    with tempfile.TemporaryDirectory() as d:
        out = os.path.join(d, "bench.json")
        cmd = [kestrel, "bench", path, "--threads", str(threads), "--iters", str(iters),
               "--warmup", "3", "--backend", backend, "--json", out]
        r = subprocess.run(cmd, capture_output=True, text=True)
        if r.returncode != 0:
            raise RuntimeError(r.stderr.strip())
        with open(out) as f:
            return json.load(f)["median_ms"]


def random_feeds(path):
    """The inputs every runtime gets: `numpy.random.default_rng(0).random` in each input's shape
    (dynamic dimensions as 1), in onnxruntime's input order."""
    import numpy as np
    import onnxruntime as ort

    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    feeds = {}
    for i in sess.get_inputs():
        shape = [d if isinstance(d, int) else 1 for d in i.shape]
        feeds[i.name] = rng.random(shape, dtype=np.float32)
    return feeds


def tract_median(path):
    """tract's own bench (`-O bench`, one thread: tract-cli from crates.io is built without its
    thread pool) on the same inputs as onnxruntime, given as an .npz that
    sets both the input facts and the values (tract refuses to invent inputs otherwise)."""
    import numpy as np

    with tempfile.TemporaryDirectory() as d:
        npz = os.path.join(d, "inputs.npz")
        np.savez(npz, **random_feeds(path))
        cmd = ["tract", path, "--input-facts-from-bundle", npz, "-O", "bench", "--input-from-npz", npz]
        r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(r.stderr.strip()[-200:])
    # tract prints e.g. "Bench ran 123 times, 8.123 ms/i." (the number in ANSI bold on a terminal).
    text = re.sub(r"\x1b\[[0-9;]*m", "", r.stdout + " " + r.stderr)
    m = re.search(r"([0-9.]+)\s*ms/i", text)
    if not m:
        raise RuntimeError("no ms/i in tract output")
    return float(m.group(1))


def quantize_with_kestrel(kestrel, src, tmp):
    """`kestrel quantize` of `src` on 8 N(0,1) samples; the path of the QDQ model."""
    import numpy as np

    calib = os.path.join(tmp, "calib.npy")
    np.save(calib, np.random.default_rng(0).standard_normal((8, 3, 224, 224)).astype(np.float32))
    out = os.path.join(tmp, os.path.basename(src).replace(".onnx", ".kestrel-int8.onnx"))
    subprocess.run([kestrel, "quantize", src, "--calib", calib, "-o", out], check=True,
                   stdout=subprocess.DEVNULL)
    return out


def report_sizes(kestrel, src, quantized, tmp):
    """Prints the `.so` sizes of `kestrel compile` of the float model and its int8 version."""
    sizes = []
    for m in (src, quantized):
        so = os.path.join(tmp, os.path.basename(m) + ".so")
        subprocess.run([kestrel, "compile", m, "-o", so], check=True, stdout=subprocess.DEVNULL)
        sizes.append(os.path.getsize(so))
    print(f"# .so size {os.path.basename(src)}: float {sizes[0]} bytes, int8 {sizes[1]} bytes "
          f"({sizes[1] / sizes[0]:.2f}x)")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default=os.environ.get("KESTREL_MODELS", os.path.join(ROOT, "..", "shared", "models")))
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--iters", type=int, default=30)
    ap.add_argument("--backend", default="jit")
    ap.add_argument("--only", nargs="*", help="substrings of model paths to keep")
    ap.add_argument("--kestrel", default=os.path.join(ROOT, "target", "release", "kestrel"))
    ap.add_argument("--baseline", help="another kestrel binary, measured in the same rounds")
    ap.add_argument("--quantized", nargs="*", default=["resnet18", "mobilenet_v2"],
                    help="torchvision models to quantize with kestrel quantize for int8 rows")
    args = ap.parse_args()

    models = [m for m in DEFAULT_MODELS if not args.only or any(s in m for s in args.only)]
    tmp = tempfile.mkdtemp(prefix="kestrel-compare-")
    for name in args.quantized:
        if args.only and not any(s in name for s in args.only):
            continue
        src = os.path.join(args.models, "torchvision", name + ".onnx")
        if not os.path.isfile(src):
            continue
        out = quantize_with_kestrel(args.kestrel, src, tmp)
        models.append(out)
        report_sizes(args.kestrel, src, out, tmp)
    have_tract = shutil.which("tract") is not None
    runtimes = (["kestrel"] + (["baseline"] if args.baseline else []) + ["onnxruntime"]
                + (["tract"] if have_tract else []))
    print(f"# models: {args.models}; kestrel backend {args.backend}; runtimes: {', '.join(runtimes)}")
    print(f"# {args.rounds} interleaved rounds x {args.iters} iterations; cells: median ms")
    header = f"{'model':<28} {'thr':>3} " + " ".join(f"{r:>12}" for r in runtimes) + f" {'kestrel/ort':>12}" + (f" {'kest/base':>10}" if args.baseline else "")
    print(header)
    speedups = []
    for rel in models:
        path = rel if os.path.isabs(rel) else os.path.join(args.models, rel)
        if not os.path.isfile(path):
            print(f"{rel:<28} missing", file=sys.stderr)
            continue
        for threads in args.threads:
            samples = {r: [] for r in runtimes}
            errors = {}
            for _ in range(args.rounds):
                for r in runtimes:
                    if r in errors or (r == "tract" and threads != 1):
                        continue
                    try:
                        if r in ("kestrel", "baseline"):
                            binary = args.kestrel if r == "kestrel" else args.baseline
                            samples[r].append(kestrel_median(binary, path, threads, args.iters, args.backend))
                        elif r == "onnxruntime":
                            samples[r].append(ort_median(path, threads, args.iters))
                        else:
                            samples[r].append(tract_median(path))
                    except Exception as e:  # one runtime failing must not hide the others
                        errors[r] = str(e).splitlines()[-1][:60] if str(e) else type(e).__name__
            cells = []
            med = {}
            for r in runtimes:
                if samples[r]:
                    med[r] = statistics.median(samples[r])
                    cells.append(f"{med[r]:>12.3f}")
                else:
                    cells.append(f"{'error' if r in errors else 'n/a':>12}")
            ratio = f"{med['kestrel'] / med['onnxruntime']:>12.2f}" if "kestrel" in med and "onnxruntime" in med else f"{'-':>12}"
            if args.baseline:
                ratio += f" {med['kestrel'] / med['baseline']:>10.3f}" if "kestrel" in med and "baseline" in med else f" {'-':>10}"
            print(f"{os.path.basename(rel):<28} {threads:>3} " + " ".join(cells) + f" {ratio}")
            speedups.append((os.path.basename(rel), threads, med))
            for r, e in errors.items():
                print(f"#   {r}: {e}")
            sys.stdout.flush()
    # Speed-up of each runtime from its 1-thread to its N-thread median.
    base = {(m, r): med[r] for m, t, med in speedups if t == 1 for r in med}
    lines = []
    for m, t, med in speedups:
        if t == 1:
            continue
        cells = [f"{r} {base[(m, r)] / med[r]:.2f}x" for r in med if (m, r) in base]
        if cells:
            lines.append(f"{m:<28} {t:>3} " + ", ".join(cells))
    if lines:
        print("# speed-up over 1 thread (1-thread median / N-thread median)")
        print("\n".join(lines))


if __name__ == "__main__":
    main()
