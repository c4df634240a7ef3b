#!/usr/bin/env bash
# Builds the image and pushes it to Amazon ECR, creating the repository when it is missing.
#
#   scripts/build_and_push.sh [--dry-run] [--repository NAME] [--moving-tag TAG] [--variant cpu|gpu]
#
# Account and region come from the standard AWS configuration (environment, ~/.aws, SSO, instance role).
# The image is tagged with the git revision (suffixed -dirty when the tree has changes) and with a moving tag
# (default: latest); the last line printed is the revision's image URI, for sagemaker_workflow.py --image.
# --dry-run asks AWS who and where you are and whether the repository exists, then prints every command
# that would change something (create-repository, docker login, build, tag, push) instead of running it.
set -euo pipefail
cd "$(dirname "$0")/.."

repository=ncf-sagemaker
moving=latest
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
    --moving-tag) moving=${2:?--moving-tag needs a tag}; shift ;;
    --variant) variant=${2:?--variant needs cpu or gpu}; shift ;;
    -h | --help) sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
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
  revision="$revision-dirty"
fi
registry="$account.dkr.ecr.$region.amazonaws.com"
image="$registry/$repository"

if aws ecr describe-repositories --repository-names "$repository" --region "$region" >/dev/null 2>"$errors"; then
  echo "ECR repository $repository exists in $region" >&2
elif grep -q RepositoryNotFoundException "$errors"; then
  run aws ecr create-repository --repository-name "$repository" --region "$region" \
    --image-scanning-configuration scanOnPush=true --output text --query repository.repositoryUri
else
  fail "cannot look up ECR repository $repository: $(tr '\n' ' ' <"$errors")"
fi

# Log in before the long build, so that a registry problem shows at once.
if [ "$dry_run" = 1 ]; then
  echo "+ aws ecr get-login-password --region $region | docker login --username AWS --password-stdin $registry"
else
  aws ecr get-login-password --region "$region" | docker login --username AWS --password-stdin "$registry" ||
    fail "docker login to $registry failed"
fi
run scripts/build_image.sh "$image:$revision" --build-arg "VARIANT=$variant"
run docker tag "$image:$revision" "$image:$moving"
run docker push "$image:$revision"
run docker push "$image:$moving"
echo "$image:$revision"
