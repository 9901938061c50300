#!/usr/bin/env bash
# Builds the `huddle` binary and the Python package (bindings/python: setup.py builds bindings/ffi
# with the `wheel` profile and generates the module with the crate's own uniffi-bindgen), installs
# the wheel into a virtual environment under the target folder with pytest, and runs
# bindings/python/tests against real `huddle serve` processes on 127.0.0.1 (bindings/README.md).
# CI=true keeps cargo offline (`--frozen`); pip still installs maturin and pytest. Exits non-zero
# on any failure.
set -euo pipefail
cd "$(dirname "$0")/.."
target=$(realpath -m "${CARGO_TARGET_DIR:-target}")
frozen=()
if [ "${CI:-}" = true ]; then
  frozen=(--frozen)
  # The package's own cargo build and its `cargo run` of uniffi-bindgen (setup.py) too.
  export HUDDLE_CARGO_ARGS=--frozen
fi

cargo build "${frozen[@]}" --bin huddle

venv="$target/python-venv"
if [ ! -x "$venv/bin/python" ]; then python3 -m venv "$venv"; fi
pip=("$venv/bin/python" -m pip --disable-pip-version-check --quiet)
"${pip[@]}" install 'setuptools>=70.1,<81' 'pytest>=8,<10'

wheels="$target/wheels"
rm -f "$wheels"/huddle-*.whl
start=$(date +%s)
# No build isolation: the setuptools just installed builds it, so nothing more is downloaded.
"${pip[@]}" wheel --no-deps --no-build-isolation --wheel-dir "$wheels" ./bindings/python
"${pip[@]}" install --force-reinstall --no-deps "$wheels"/huddle-*.whl
echo "wheel built and installed in $(($(date +%s) - start)) s: $(du -k "$wheels"/huddle-*.whl | cut -f1) KB"

HUDDLE_BIN="$target/debug/huddle" timeout 600 "$venv/bin/python" -m pytest -q \
  -p no:cacheprovider bindings/python/tests
