#!/usr/bin/env bash
# Installs ONNX Runtime's shared library where the engine looks for it by default.
#
#   scripts/install-onnxruntime.sh [DEST]      # DEST defaults to ./onnxruntime
#
# The library comes from the pinned `onnxruntime` wheel on PyPI (the only download, through
# pip), checked against the wheel's SHA-256 below, and is unpacked to
#   DEST/libonnxruntime.so.<version>   (+ libonnxruntime_providers_shared.so)
#   DEST/libonnxruntime.so -> libonnxruntime.so.<version>
# The engine loads `ORT_DYLIB_PATH` when it is set, else `onnxruntime/libonnxruntime.so` in its
# working directory, else `libonnxruntime.so` from the system's library path
# (docs/model-repository.md, "Runtimes"). Running it again when the library is in place does
# nothing. Needs python3 with pip; nothing else.
set -euo pipefail

# Keep in step with the `ort` crate's ONNX Runtime API level (Cargo.toml: ort's `api-*` feature).
VERSION=1.31.1
declare -A WHEEL_SHA256=(
    [x86_64]=5752bd508126ae7c49894d3b9d2e83f0c3d487319246d04c444b393308d7ad7f
    [aarch64]=da05378364c44d4407e463982d2bf8d5e4cfea873283757e48beeb41df97b7f3
)

dest=${1:-onnxruntime}
library="libonnxruntime.so.$VERSION"
if [[ -f "$dest/$library" && -L "$dest/libonnxruntime.so" ]]; then
    echo "ONNX Runtime $VERSION is already installed in $dest/"
    exit 0
fi

arch=$(uname -m)
expected=${WHEEL_SHA256[$arch]:-}
if [[ $(uname -s) != Linux || -z $expected ]]; then
    echo "error: this script installs ONNX Runtime for Linux x86_64 and aarch64 only (this is $(uname -s) $arch);" \
        "install ONNX Runtime $VERSION yourself and set ORT_DYLIB_PATH" >&2
    exit 1
fi
python=${PYTHON:-python3}
if ! "$python" -m pip --version >/dev/null 2>&1; then
    echo "error: $python with pip is needed to fetch the onnxruntime wheel from PyPI" >&2
    exit 1
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# The shared library is the same in every CPython build of the wheel: ask for one explicitly so
# the result does not depend on the local Python.
"$python" -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.11 \
    --platform "manylinux_2_28_$arch" --dest "$work" "onnxruntime==$VERSION"
wheel=("$work"/onnxruntime-"$VERSION"-*.whl)
actual=$(sha256sum "${wheel[0]}" | cut -d' ' -f1)
if [[ $actual != "$expected" ]]; then
    echo "error: ${wheel[0]##*/} has SHA-256 $actual, expected $expected" >&2
    exit 1
fi

mkdir -p "$dest"
"$python" - "${wheel[0]}" "$dest" "$library" <<'EOF'
import sys, zipfile
wheel, dest, library = sys.argv[1:]
with zipfile.ZipFile(wheel) as archive:
    for name in (library, "libonnxruntime_providers_shared.so"):
        with archive.open(f"onnxruntime/capi/{name}") as source, open(f"{dest}/{name}", "wb") as target:
            target.write(source.read())
EOF
ln -sf "$library" "$dest/libonnxruntime.so"
echo "ONNX Runtime $VERSION installed in $dest/ (from PyPI onnxruntime==$VERSION)"
