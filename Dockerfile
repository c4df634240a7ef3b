# One Dockerfile, two images. The default target trains and serves: SageMaker training jobs
# (`docker run IMAGE train`), endpoints and batch transform (`docker run IMAGE serve`). The `serve` target is
# the same server without TensorFlow (numpy, Flask, gunicorn): a fraction of the size, for endpoints and batch
# transform of any model folder the full image trained. Both build with the classic builder and BuildKit.
#   docker build -t ncf-sagemaker .                                  CPU TensorFlow (default, smaller)
#   docker build -t ncf-sagemaker:gpu --build-arg VARIANT=gpu .      TensorFlow with CUDA wheels
#   docker build -t ncf-sagemaker:serve --target serve .             serve only, no TensorFlow
# The base is the exact Python release the lock files are resolved for (scripts/lock.sh reads it from the line
# below). Pin it by digest too, once you have pulled it where a registry is reachable:
#   docker pull python:3.11.14-slim-bookworm && docker inspect --format '{{index .RepoDigests 0}}' python:3.11.14-slim-bookworm
#   --build-arg BASE_IMAGE=python:3.11.14-slim-bookworm@sha256:...  (scripts/build_image.sh passes $BASE_IMAGE)
ARG BASE_IMAGE=python:3.11.14-slim-bookworm
FROM ${BASE_IMAGE} AS base

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    TF_CPP_MIN_LOG_LEVEL=2
WORKDIR /opt/program
# serve's workers drop to this user (container/gunicorn.conf.py). train stays root: SageMaker mounts
# /opt/ml owned by root, and the job must write model/, output/ and checkpoints/ there.
RUN useradd --system --no-create-home --shell /usr/sbin/nologin ncf
EXPOSE 8080

# The serve-only image: what `serve` imports (pyproject's base dependencies, at the full image's versions).
FROM base AS serve
# scripts/build_image.sh passes the serve lock's SHA-256 (the build checks it) and, at the end, the git revision.
ARG SERVE_LOCK_SHA256=unknown
LABEL com.amazonaws.sagemaker.capabilities.accept-bind-to-port=true \
      com.amazonaws.sagemaker.capabilities.multi-models=true \
      org.opencontainers.image.title="ncf-sagemaker-serve" \
      org.opencontainers.image.description="NeuMF recommender: SageMaker serve (numpy, no TensorFlow)" \
      ncf.lock="requirements/image-serve.lock" \
      ncf.lock.sha256="${SERVE_LOCK_SHA256}" \
      ncf.sbom="/opt/program/sbom.cdx.json"
ENV NCF_LOCK_FILE=/opt/program/requirements/image-serve.lock
COPY requirements/image-serve.lock requirements/
COPY pyproject.toml README.md ./
COPY ncf/ ncf/
COPY container/ container/
# One layer, so that what it removes is gone from the image, not hidden by a later layer: setuptools (needed
# only to install this project), the wheels' own test suites and numpy's build tools (distutils, f2py).
# `train` needs TensorFlow: here it says so (in the job's failure file too) instead of a traceback.
RUN if [ "$SERVE_LOCK_SHA256" != unknown ]; then \
      echo "$SERVE_LOCK_SHA256  requirements/image-serve.lock" | sha256sum -c - ; fi \
 && python3 -m pip install --require-hashes --no-deps -r requirements/image-serve.lock \
 && python3 -m pip install --no-deps --no-build-isolation . \
 && python3 -m pip uninstall --yes --quiet setuptools \
 && site="$(python3 -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')" \
 && find "$site" -depth -type d -name tests -exec rm -rf {} + \
 && rm -rf build *.egg-info "$site/numpy/distutils" "$site/numpy/f2py" \
 && printf '%s\n' '#!/bin/sh' \
      'why="this is the serve-only image (no TensorFlow): train with the full ncf-sagemaker image"' \
      'echo "$why" >&2; mkdir -p "${SAGEMAKER_BASE_DIR:-/opt/ml}/output" 2>/dev/null \' \
      '  && echo "$why" > "${SAGEMAKER_BASE_DIR:-/opt/ml}/output/failure" 2>/dev/null; exit 2' \
      > "$(command -v train)" \
 && command -v serve && ncf-version
COPY requirements/sbom.lock requirements/
RUN python3 -m venv --without-pip /tmp/sbom \
 && python3 -m pip --python /tmp/sbom/bin/python install --quiet --require-hashes --no-deps \
      -r requirements/sbom.lock \
 && /tmp/sbom/bin/python -m cyclonedx_py environment --output-reproducible --of JSON \
      --output-file /opt/program/sbom.cdx.json "$(command -v python3)" \
 && rm -rf /tmp/sbom requirements/sbom.lock
ARG REVISION=unknown
LABEL org.opencontainers.image.revision="${REVISION}"
ENV NCF_REVISION=${REVISION}
CMD ["serve"]

# The full image (the default target): TensorFlow for `train`, and the same `serve`.
FROM base AS full
ARG VARIANT=cpu
# scripts/build_image.sh passes the lock file's SHA-256 (the build checks it) and, at the end, the git revision.
ARG LOCK_SHA256=unknown
LABEL com.amazonaws.sagemaker.capabilities.accept-bind-to-port=true \
      com.amazonaws.sagemaker.capabilities.multi-models=true \
      org.opencontainers.image.title="ncf-sagemaker" \
      org.opencontainers.image.description="NeuMF recommender: SageMaker train and serve" \
      ncf.lock="requirements/image-${VARIANT}.lock" \
      ncf.lock.sha256="${LOCK_SHA256}" \
      ncf.sbom="/opt/program/sbom.cdx.json"

ENV NCF_LOCK_FILE=/opt/program/requirements/image-${VARIANT}.lock

# The locked, hash-checked runtime first: this layer is reused until a lock file changes.
COPY requirements/image-${VARIANT}.lock requirements/
RUN if [ "$LOCK_SHA256" != unknown ]; then \
      echo "$LOCK_SHA256  requirements/image-${VARIANT}.lock" | sha256sum -c - ; fi \
 && python3 -m pip install --require-hashes --no-deps -r requirements/image-${VARIANT}.lock

# Then the project itself (no dependency resolution: everything came from the lock).
COPY pyproject.toml README.md ./
COPY ncf/ ncf/
COPY container/ container/
RUN python3 -m pip install --no-deps --no-build-isolation . \
 && rm -rf build *.egg-info \
 && command -v train && command -v serve && ncf-version

# A CycloneDX SBOM of the runtime environment, for ECR/Inspector or any scanner: written by cyclonedx-bom from
# a throwaway virtual environment (its own lock), which is removed, so the SBOM describes what runs.
COPY requirements/sbom.lock requirements/
RUN python3 -m venv --without-pip /tmp/sbom \
 && python3 -m pip --python /tmp/sbom/bin/python install --quiet --require-hashes --no-deps \
      -r requirements/sbom.lock \
 && /tmp/sbom/bin/python -m cyclonedx_py environment --output-reproducible --of JSON \
      --output-file /opt/program/sbom.cdx.json "$(command -v python3)" \
 && rm -rf /tmp/sbom requirements/sbom.lock

# Last, so a new revision rebuilds nothing above. `docker run IMAGE ncf-version` prints all of it as JSON.
ARG REVISION=unknown
LABEL org.opencontainers.image.revision="${REVISION}"
ENV NCF_REVISION=${REVISION}

# SageMaker passes `train` or `serve`; local mode of the SageMaker SDK runs the default, so it must be train.
CMD ["train"]
