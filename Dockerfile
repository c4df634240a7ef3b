# One image for SageMaker training jobs (`docker run IMAGE train`), endpoints and batch transform
# (`docker run IMAGE serve`). Builds with the classic builder as well as BuildKit.
#   docker build -t ncf-sagemaker .                                  CPU TensorFlow (default, smaller)
#   docker build -t ncf-sagemaker:gpu --build-arg VARIANT=gpu .      TensorFlow with CUDA wheels
#   --build-arg BASE_IMAGE=python:3.11-slim-bookworm@sha256:...      pin the base by digest, or use a mirror
ARG BASE_IMAGE=python:3.11-slim-bookworm
FROM ${BASE_IMAGE}

ARG VARIANT=cpu
LABEL com.amazonaws.sagemaker.capabilities.accept-bind-to-port=true \
      org.opencontainers.image.title="ncf-sagemaker" \
      org.opencontainers.image.description="NeuMF recommender: SageMaker train and serve"

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    TF_CPP_MIN_LOG_LEVEL=2

WORKDIR /opt/program

# The locked, hash-checked runtime first: this layer is reused until a lock file changes.
COPY requirements/image-${VARIANT}.lock requirements/
RUN python3 -m pip install --require-hashes --no-deps -r requirements/image-${VARIANT}.lock

# Then the project itself (no dependency resolution: everything came from the lock).
COPY pyproject.toml README.md ./
COPY ncf/ ncf/
COPY container/ container/
RUN python3 -m pip install --no-deps --no-build-isolation . \
 && rm -rf build *.egg-info \
 && command -v train && command -v serve

# serve's workers drop to this user (container/gunicorn.conf.py). train stays root: SageMaker mounts
# /opt/ml owned by root, and the job must write model/, output/ and checkpoints/ there.
RUN useradd --system --no-create-home --shell /usr/sbin/nologin ncf

EXPOSE 8080
# SageMaker passes `train` or `serve`; local mode of the SageMaker SDK runs the default, so it must be train.
CMD ["train"]
