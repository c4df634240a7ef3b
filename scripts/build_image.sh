#!/usr/bin/env bash
# Builds the image and prints its size.   scripts/build_image.sh [TAG] [docker build options...]
# e.g. scripts/build_image.sh ncf-sagemaker:gpu --build-arg VARIANT=gpu
set -euo pipefail
cd "$(dirname "$0")/.."
command -v docker >/dev/null || { echo "build_image.sh: docker is not installed" >&2; exit 1; }
tag=${1:-ncf-sagemaker:latest}
shift || true
DOCKER_BUILDKIT=${DOCKER_BUILDKIT:-0} docker build -t "$tag" "$@" .
bytes=$(docker image inspect "$tag" --format '{{.Size}}')
echo "image $tag: $((bytes / 1000000)) MB"
