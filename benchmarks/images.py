"""The two images side by side: the full one (train and serve) and the serve-only target (#35).

    .venv/bin/python -m benchmarks.images --full ncf-sagemaker:ci --serve ncf-sagemaker:ci-serve

Per image: its size, what it adds to its base image (the base's own size differs between the official
`python:3.11-slim-bookworm` and a local stand-in, what it adds does not), and, over `--runs` cold starts of
`docker run ... serve` on one model folder: the seconds from `docker run` to the first 200 on `/ping`, and
the first top-10 request's latency after it. The model is a default NeuMF trained on synthetic data of
ml-latest-small's shape (built once under `--work`). Needs a Docker engine.
"""

from __future__ import annotations

import argparse
import http.client
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

from benchmarks import results
from benchmarks.server import free_port


def docker(*args: str, check: bool = True) -> str:
    return subprocess.run(["docker", *args], capture_output=True, text=True, check=check, timeout=600).stdout


def model_folder(work: Path) -> Path:
    """A default NeuMF of ml-latest-small's shape (synthetic data), trained once and reused."""
    folder = work / "model"
    if (folder / "metadata.json").is_file():
        return folder
    from ncf import artifacts
    from ncf.dataset import prepare
    from ncf.synthetic import SyntheticSpec, generate
    from ncf.training import TrainConfig, fit, to_artifact

    data = prepare(generate(SyntheticSpec(interactions=100_836, users=610, items=9_724)).interactions())
    result = fit(data, TrainConfig(epochs=2))
    artifacts.save(folder, to_artifact(result, data))
    return folder


def _get(port: int, method: str, path: str, body: bytes | None = None) -> tuple[int, bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        connection.request(method, path, body=body, headers={"Content-Type": "application/json"})
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def cold_start(image: str, folder: Path, user: str) -> tuple[float, float]:
    """Seconds from `docker run` to the first 200 on /ping, and the first top-10's seconds after it."""
    port = free_port()
    start = time.perf_counter()
    container = docker("run", "-d", "-p", f"127.0.0.1:{port}:8080", "-v", f"{folder}:/opt/ml/model:ro",
                       "-e", "SAGEMAKER_MODEL_SERVER_WORKERS=2", image, "serve").strip()
    try:
        while True:
            try:
                if _get(port, "GET", "/ping")[0] == 200:
                    break
            except OSError:
                pass
            if time.perf_counter() - start > 120:
                raise SystemExit(f"{image}: no 200 on /ping within 120 s:\n{docker('logs', container)}")
            time.sleep(0.02)
        ready = time.perf_counter() - start
        asked = time.perf_counter()
        status, body = _get(port, "POST", "/invocations", json.dumps({"user": user, "k": 10}).encode())
        if status != 200:
            raise SystemExit(f"{image}: the first request answered {status}: {body[:300]!r}")
        return ready, time.perf_counter() - asked
    finally:
        docker("rm", "-f", container, check=False)


def image_sizes(image: str, base: str) -> dict:
    """The image's size and what it adds to `base`, the image it was built FROM."""
    size = int(docker("image", "inspect", image, "--format", "{{.Size}}"))
    base_size = int(docker("image", "inspect", base, "--format", "{{.Size}}"))
    return {"size_mb": size / 1e6, "added_mb": (size - base_size) / 1e6, "base": base}


def run(images: dict[str, str], base: str, work: Path, runs: int) -> dict:
    folder = model_folder(work)
    from ncf.recommender import Recommender

    user = str(Recommender.load(folder).users.decode([0])[0])
    out = {}
    for label, image in images.items():
        starts = [cold_start(image, folder, user) for _ in range(runs)]
        out[label] = {"image": image, **image_sizes(image, base),
                      "ready_s": [s for s, _ in starts], "first_request_s": [f for _, f in starts]}
        print(f"{label}: {out[label]['size_mb']:.0f} MB, ready in {statistics.median(out[label]['ready_s']):.2f} s",
              file=sys.stderr)
    return {"runs": runs, "images": out}


def markdown(result: dict) -> str:
    rows = []
    for label, r in result["images"].items():
        rows.append([label, f"`{r['image']}`", f"{r['size_mb']:.0f}", f"{r['added_mb']:.0f}",
                     f"{statistics.median(r['ready_s']):.2f} ({max(r['ready_s']):.2f})",
                     f"{statistics.median(r['first_request_s']) * 1e3:.1f} ({max(r['first_request_s']) * 1e3:.1f})"])
    return "\n\n".join([results.provenance(result), results.table(
        ["image", "tag", "size MB", f"added to `{next(iter(result['images'].values()))['base']}` MB", "docker run to /ping 200, s: median (max)",
         "first top-10, ms: median (max)"], rows, "llrrrr")])


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--full", default="ncf-sagemaker:ci", help="the full image's tag")
    p.add_argument("--serve", default="ncf-sagemaker:ci-serve", help="the serve-only image's tag")
    p.add_argument("--base", default="python:3.11-slim-bookworm", help="the base both were built FROM")
    p.add_argument("--runs", type=int, default=5, help="cold starts per image")
    p.add_argument("--work", type=Path, default=Path("/tmp/ncf-images"), help="where the model folder is kept")
    p.add_argument("--note", help="what else shared the machine")
    results.add_argument(p, "images")
    args = p.parse_args(argv)
    figures = run({"full": args.full, "serve-only": args.serve}, args.base, args.work, args.runs)
    written = results.write(args.json, "images", sys.argv[1:] if argv is None else argv, figures, args.note)
    print(markdown(written))


if __name__ == "__main__":
    main()
