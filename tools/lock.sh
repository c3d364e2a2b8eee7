#!/usr/bin/env bash
# Regenerates both locks from the project's metadata (setup.cfg, read through pyproject.toml), with hashes:
#
#   requirements.lock          the `test` extra's closure (the suite, TFDS, TensorBoard): what CI installs
#   requirements-runtime.lock  install_requires' closure (no TensorFlow, no pytest): what the main job needs
#
# Both are universal (environment markers, one file for Linux x86-64/aarch64, macOS arm64 and Windows) for
# Python 3.11 (setuptools and wheel included: with hashes pip wants every package pinned; setuptools was moved
# off the 65.5 a Python 3.11 venv ships with, whose package_index has published CVEs, by `tools/lock.sh
# --upgrade-package 'setuptools<81'`: 82 removes pkg_resources), and the runtime lock takes the test lock's
# versions (-c), so both compute the same numbers.
# The versions already in requirements.lock are kept (uv prefers them); `tools/lock.sh --upgrade` moves every pin
# to the newest release the floors allow (then see docs/install.md: rerun the suite, tests/test_golden.py).
# Needs uv (`pip install uv`) and the package index.
set -euo pipefail
cd "$(dirname "$0")/.."
compile() {
  uv pip compile pyproject.toml --universal --python-version 3.11 --generate-hashes \
    --annotation-style line \
    --custom-compile-command tools/lock.sh "$@"
}
compile --extra test -o requirements.lock "$@"
compile -c requirements.lock -o requirements-runtime.lock "$@"
