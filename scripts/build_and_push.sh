#!/usr/bin/env bash
# Builds the image and pushes it to Amazon ECR, creating the repository when it is missing.
#
#   scripts/build_and_push.sh [--dry-run] [--repository NAME] [--variant cpu|gpu]
#
# Account and region come from the standard AWS configuration (environment, ~/.aws, SSO, instance role).
# A new repository is created with scan on push and immutable tags. The image is tagged REVISION-VARIANT (the
# git revision, with -dirty-TIME when the tree has changes: an immutable tag is pushed once; a tag already in
# the repository is not built again, its digest is printed); its CycloneDX SBOM is copied out of the image to
# sbom/REPOSITORY-TAG.cdx.json; the last line printed is the image by digest
# (REPOSITORY@sha256:...), what sagemaker_workflow.py --image should be given: it names these bytes forever.
# --dry-run asks AWS who and where you are and whether the repository exists, then prints every command
# that would change something (create-repository, docker login, build, push) instead of running it.
set -euo pipefail
cd "$(dirname "$0")/.."

repository=ncf-sagemaker
variant=cpu
dry_run=0

fail() {
  echo "build_and_push.sh: $*" >&2
  exit 1
}

while [ $# -gt 0 ]; do
  case "$1" in
    --dry-run) dry_run=1 ;;
    --repository) repository=${2:?--repository needs a name}; shift ;;
    --moving-tag)
      echo "build_and_push.sh: --moving-tag is gone: tags are immutable; use the digest this script prints last" >&2
      exit 2 ;;
    --variant) variant=${2:?--variant needs cpu or gpu}; shift ;;
    -h | --help) sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "build_and_push.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
  shift
done
case "$variant" in cpu | gpu) ;; *) fail "--variant must be cpu or gpu, not '$variant'" ;; esac

# Runs a command, or prints it (shell-quoted, after '+ ') in a dry run.
run() {
  if [ "$dry_run" = 1 ]; then
    printf '+'
    printf ' %q' "$@"
    printf '\n'
  else
    "$@"
  fi
}

command -v aws >/dev/null 2>&1 ||
  fail "the AWS CLI is not installed: install it (https://aws.amazon.com/cli/) or use .venv-aws/bin/aws from scripts/setup.sh"
command -v docker >/dev/null 2>&1 || fail "docker is not installed"
if [ "$dry_run" = 0 ]; then
  docker info >/dev/null 2>&1 || fail "no Docker engine answers ('docker info' failed): start Docker first"
fi

errors=$(mktemp)
trap 'rm -f "$errors"' EXIT
region=${AWS_REGION:-${AWS_DEFAULT_REGION:-$(aws configure get region 2>/dev/null || true)}}
[ -n "$region" ] || fail "no AWS region: set AWS_REGION or run 'aws configure set region REGION'"
account=$(aws sts get-caller-identity --region "$region" --query Account --output text 2>"$errors") ||
  fail "no usable AWS credentials (aws sts get-caller-identity: $(tr '\n' ' ' <"$errors")); run 'aws configure' or 'aws sso login'"

revision=$(git rev-parse --short=12 HEAD 2>/dev/null || echo unversioned)
if [ "$revision" != unversioned ] && ! git diff --quiet HEAD 2>/dev/null; then
  revision="$revision-dirty-$(date -u +%Y%m%dT%H%M%S)"
fi
registry="$account.dkr.ecr.$region.amazonaws.com"
image="$registry/$repository"
tag="$revision-$variant"

if settings=$(aws ecr describe-repositories --repository-names "$repository" --region "$region" --output text \
    --query 'repositories[0].[imageTagMutability,imageScanningConfiguration.scanOnPush]' 2>"$errors"); then
  echo "ECR repository $repository exists in $region" >&2
  # An existing repository is the user's: say what differs, change nothing.
  case "$settings" in
    IMMUTABLE*) ;;
    *) echo "note: its tags are mutable; to make them immutable: aws ecr put-image-tag-mutability" \
         "--repository-name $repository --image-tag-mutability IMMUTABLE --region $region" >&2 ;;
  esac
  case "$settings" in
    *True) ;;
    *) echo "note: it does not scan on push; to turn scanning on: aws ecr put-image-scanning-configuration" \
         "--repository-name $repository --image-scanning-configuration scanOnPush=true --region $region" >&2 ;;
  esac
elif grep -q RepositoryNotFoundException "$errors"; then
  run aws ecr create-repository --repository-name "$repository" --region "$region" \
    --image-tag-mutability IMMUTABLE --image-scanning-configuration scanOnPush=true \
    --output text --query repository.repositoryUri
else
  fail "cannot look up ECR repository $repository: $(tr '\n' ' ' <"$errors")"
fi

# Tags are immutable: a tag already pushed names its image for good, so there is nothing to build.
if pushed=$(aws ecr describe-images --repository-name "$repository" --region "$region" --image-ids "imageTag=$tag" \
    --query 'imageDetails[0].imageDigest' --output text 2>/dev/null) && [ -n "$pushed" ] && [ "$pushed" != None ]; then
  echo "$image:$tag is already in the repository (tags are immutable); refer to it by digest:" >&2
  echo "$image@$pushed"
  exit 0
fi

# Log in before the long build, so that a registry problem shows at once.
if [ "$dry_run" = 1 ]; then
  echo "+ aws ecr get-login-password --region $region | docker login --username AWS --password-stdin $registry"
else
  aws ecr get-login-password --region "$region" | docker login --username AWS --password-stdin "$registry" ||
    fail "docker login to $registry failed"
fi
run scripts/build_image.sh "$image:$tag" --build-arg "VARIANT=$variant"
sbom="sbom/${repository//\//-}-$tag.cdx.json"
if [ "$dry_run" = 1 ]; then
  echo "+ docker run --rm $image:$tag cat /opt/program/sbom.cdx.json > $sbom"
else
  mkdir -p sbom
  docker run --rm "$image:$tag" cat /opt/program/sbom.cdx.json >"$sbom" ||
    fail "cannot copy the SBOM out of $image:$tag"
  echo "SBOM of $image:$tag: $sbom" >&2
fi
run docker push "$image:$tag"
if [ "$dry_run" = 1 ]; then
  echo "$image:$tag"
  echo "(a dry run: the digest, $image@sha256:..., is known once the push has happened)" >&2
else
  digest=$(docker image inspect "$image:$tag" --format '{{range .RepoDigests}}{{println .}}{{end}}' |
    grep -m1 "^$image@sha256:") || fail "the push left no digest for $image:$tag"
  echo "pushed $image:$tag; refer to it by digest:" >&2
  echo "$digest"
fi
