#!/usr/bin/env bash
# Builds the image and prints its size.   scripts/build_image.sh [TAG] [docker build options...]
# e.g. scripts/build_image.sh ncf-sagemaker:gpu --build-arg VARIANT=gpu
#      scripts/build_image.sh ncf-sagemaker:serve --target serve      (the serve-only image, no TensorFlow)
# It labels the image with the git revision and the lock file's SHA-256 (the build checks it against the file
# it installs). BASE_IMAGE=... in the environment replaces the Dockerfile's base (a digest, a mirror, or CI's
# local stand-in).
set -euo pipefail
cd "$(dirname "$0")/.."
command -v docker >/dev/null || { echo "build_image.sh: docker is not installed" >&2; exit 1; }
tag=${1:-ncf-sagemaker:latest}
shift || true
variant=cpu
for arg in "$@"; do
  case "$arg" in VARIANT=* | --build-arg=VARIANT=*) variant=${arg##*VARIANT=} ;; esac
done
lock=requirements/image-$variant.lock
[ -f "$lock" ] || { echo "build_image.sh: no $lock (VARIANT is cpu or gpu)" >&2; exit 1; }
revision=$(git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)
if [ "$revision" != unknown ] && ! git diff --quiet HEAD 2>/dev/null; then
  revision="$revision-dirty"
fi
serve_lock=requirements/image-serve.lock
base=()
[ -z "${BASE_IMAGE:-}" ] || base=(--build-arg "BASE_IMAGE=$BASE_IMAGE")
DOCKER_BUILDKIT=${DOCKER_BUILDKIT:-0} docker build -t "$tag" ${base[@]+"${base[@]}"} --build-arg "REVISION=$revision" \
  --build-arg "LOCK_SHA256=$(sha256sum "$lock" | cut -d' ' -f1)" \
  --build-arg "SERVE_LOCK_SHA256=$(sha256sum "$serve_lock" | cut -d' ' -f1)" "$@" .
bytes=$(docker image inspect "$tag" --format '{{.Size}}')
echo "image $tag: $((bytes / 1000000)) MB"
