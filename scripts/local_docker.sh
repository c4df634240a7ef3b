#!/usr/bin/env bash
# Train and serve with the image on this machine, exactly as SageMaker would, with nothing but docker.
#
#   scripts/local_docker.sh RATINGS_FILE [KEY=VALUE ...]      hyperparameters, e.g. epochs=5 model=neumf
#   scripts/local_docker.sh ml-latest-small [KEY=VALUE ...]   MovieLens, downloaded by the image itself
#
# Lays out /opt/ml in a temporary folder, runs `train` in a container, then `serve` with the trained model
# mounted at /opt/ml/model on 127.0.0.1:$PORT (default 8080), waits for /ping and prints recommendations.
# IMAGE (default ncf-sagemaker:latest) is built first when missing. KEEP=1 leaves the endpoint running.
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -ge 1 ] || { echo "usage: $0 RATINGS_FILE|MOVIELENS_NAME [KEY=VALUE ...]" >&2; exit 2; }
command -v docker >/dev/null || { echo "local_docker.sh: docker is not installed" >&2; exit 1; }
image=${IMAGE:-ncf-sagemaker:latest} port=${PORT:-8080}
ratings=$1; shift
docker image inspect "$image" >/dev/null 2>&1 || scripts/build_image.sh "$image"

root=$(mktemp -d /tmp/opt_ml.XXXXXX)
mkdir -p "$root/input/config" "$root/input/data/train" "$root/model" "$root/output"
if [ ! -f "$ratings" ]; then  # a MovieLens name: download it from GroupLens with the image's own code
  cache=${NCF_CACHE:-$HOME/.cache/ncf/movielens}
  mkdir -p "$cache"
  member=$(docker run --rm -v "$cache:/cache" "$image" python3 -c \
    "import sys; from ncf import movielens; print(movielens.download(sys.argv[1], '/cache', progress=False))" \
    "$ratings" | tail -n 1)
  ratings="$cache/${member#/cache/}"
fi
cp "$ratings" "$root/input/data/train/"
python3 - "$root/input/config/hyperparameters.json" "$@" <<'PY'
import json, sys
pairs = dict(arg.split("=", 1) for arg in sys.argv[2:])
json.dump(pairs, open(sys.argv[1], "w"))   # strings, as SageMaker passes them
PY
echo '{"train": {"TrainingInputMode": "File", "S3DistributionType": "FullyReplicated", "RecordWrapperType": "None"}}' \
  >"$root/input/config/inputdataconfig.json"

echo "== train (opt/ml at $root)"
if ! docker run --rm -v "$root:/opt/ml" "$image" train; then
  echo "training failed: $(cat "$root/output/failure" 2>/dev/null)" >&2
  exit 1
fi
cat "$root/output/data/metrics.json"
echo

echo "== serve on 127.0.0.1:$port"
container=$(docker run -d --rm -p "127.0.0.1:$port:8080" -v "$root/model:/opt/ml/model" "$image" serve)
[ -n "${KEEP:-}" ] || trap 'docker stop "$container" >/dev/null' EXIT
for _ in $(seq 1 60); do
  curl -sf "http://127.0.0.1:$port/ping" >/dev/null && break
  sleep 1
done
curl -sf "http://127.0.0.1:$port/ping" >/dev/null || { docker logs "$container" >&2; exit 1; }
user=$(python3 - "$ratings" <<'PY'
import re, sys
lines = [l for l in open(sys.argv[1], errors="replace") if l.strip()][:2]
first = re.split(r"[,\t;|: ]+", lines[0].strip())[0]
print(re.split(r"[,\t;|: ]+", lines[1].strip())[0] if re.search(r"[A-Za-z]", lines[0]) else first)
PY
)
echo "== recommendations for user $user"
curl -s -X POST "http://127.0.0.1:$port/invocations" -H 'Content-Type: application/json' \
  -d "{\"user\": \"$user\", \"k\": 5}"
echo
echo "== a new user (popularity fallback)"
curl -s -X POST "http://127.0.0.1:$port/invocations" -H 'Content-Type: application/json' -d '{"user": "new", "k": 3}'
echo
[ -z "${KEEP:-}" ] || echo "endpoint left running: container $container (docker stop $container)"
