#!/usr/bin/env bash
# Re-resolves the lock files (with hashes) after a change to pyproject.toml or requirements/*.in.
# The image is linux/x86_64 with the Python release its Dockerfile pins (BASE_IMAGE's python:3.11.N), which
# the locks are resolved for; test tools are constrained to the image's versions.
set -euo pipefail
cd "$(dirname "$0")/.."
uv=${UV:-.venv/bin/uv}
python=$(sed -n 's/^ARG BASE_IMAGE=python:\([0-9.]*\)-.*/\1/p' Dockerfile)
[ -n "$python" ] || { echo "lock.sh: no 'ARG BASE_IMAGE=python:X.Y.Z-...' line in the Dockerfile" >&2; exit 1; }
common=(--generate-hashes --python-version "$python" --python-platform x86_64-manylinux_2_28 --no-header)
"$uv" pip compile pyproject.toml --extra cpu "${common[@]}" -o requirements/image-cpu.lock
"$uv" pip compile pyproject.toml --extra gpu "${common[@]}" -o requirements/image-gpu.lock
# The serve-only image (Dockerfile target `serve`): the base dependencies alone, at the CPU image's versions.
"$uv" pip compile pyproject.toml requirements/image-serve.in "${common[@]}" -c requirements/image-cpu.lock -o requirements/image-serve.lock
"$uv" pip compile requirements/test.in -c requirements/image-cpu.lock "${common[@]}" -o requirements/test.lock
"$uv" pip compile requirements/sbom.in "${common[@]}" -o requirements/sbom.lock
"$uv" pip compile requirements/bench.in -c requirements/image-cpu.lock "${common[@]}" -o requirements/bench.lock
# The AWS side has an environment of its own (sagemaker-core needs protobuf < 7, TensorFlow 2.21 protobuf 7).
"$uv" pip compile requirements/aws.in "${common[@]}" -o requirements/aws.lock
