#!/usr/bin/env bash
# Downloads the ONNX backend test data (onnx 1.22.0, the last wheel that ships it) into
# target/onnx-tests/{node,light,simple,pytorch-converted,pytorch-operator}. Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."
dest=target/onnx-tests
if [ -f "$dest/.complete" ]; then
  echo "ONNX test data already in $dest"
  exit 0
fi
wheel_dir=target/onnx-wheel
mkdir -p "$wheel_dir"
python3 -m pip download --quiet --no-deps --only-binary=:all: onnx==1.22.0 -d "$wheel_dir"
wheel=$(ls "$wheel_dir"/onnx-1.22.0-*.whl | head -n1)
rm -rf "$dest.tmp"
python3 - "$wheel" "$dest.tmp" <<'PY'
import sys, zipfile, os
wheel, dest = sys.argv[1], sys.argv[2]
prefix = "onnx/backend/test/data/"
with zipfile.ZipFile(wheel) as z:
    for name in z.namelist():
        if name.startswith(prefix) and not name.endswith("/"):
            rel = name[len(prefix):]
            out = os.path.join(dest, rel)
            os.makedirs(os.path.dirname(out), exist_ok=True)
            with open(out, "wb") as f:
                f.write(z.read(name))
PY
rm -rf "$dest"
mv "$dest.tmp" "$dest"
touch "$dest/.complete"
echo "ONNX test data: $(ls -d $dest/node/*/ | wc -l) node cases in $dest"
