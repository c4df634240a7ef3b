#!/usr/bin/env bash
# Creates .venv with the image's locked runtime (hash-checked) plus the test tools, and .venv-aws with the
# AWS side (SageMaker SDK v3, boto3, AWS CLI, moto), on a fresh machine. They are two environments because
# TensorFlow 2.21 needs protobuf 7 and the SDK protobuf < 7. Re-running it is cheap: pip skips what is
# already installed at the locked version.
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-python3}
"$python" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' \
  || { echo "setup.sh: Python 3.11 is required (the image's runtime); set PYTHON=/path/to/python3.11" >&2; exit 1; }
[ -x .venv/bin/python ] || "$python" -m venv .venv
.venv/bin/python -m pip install --quiet --disable-pip-version-check --require-hashes --no-deps -r requirements/image-cpu.lock
.venv/bin/python -m pip install --quiet --disable-pip-version-check --require-hashes --no-deps -r requirements/test.lock
.venv/bin/python -m pip install --quiet --disable-pip-version-check --no-deps -e .

[ -x .venv-aws/bin/python ] || "$python" -m venv .venv-aws
.venv-aws/bin/python -m pip install --quiet --disable-pip-version-check --require-hashes --no-deps -r requirements/aws.lock
