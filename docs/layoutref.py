"""docs/layout.md's table, generated from the modules' own docstrings.

Each Python module's row is the first sentence of its docstring, so a module that moves, splits or changes its
concern changes the page with it (`python docs/tables.py`; `--check` fails when they differ). Folders and files
that are not Python modules keep the few words written here.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

#: Layers and folders, in the order a reader meets them, each with the rows that are not Python modules.
SECTIONS = (
    ("ncf", "the recommender library; knows nothing of SageMaker, HTTP or `/opt/ml`", ()),
    ("container", "the SageMaker contract; knows `/opt/ml`, the environment and HTTP", ()),
    ("scripts", "the AWS and local side; nothing in the image imports it", (
        ("scripts/setup.sh", "the virtual environments `.venv` (the image's runtime and the test tools) and `.venv-aws`"),
        ("scripts/build_image.sh", "builds the image (`--target serve`: the serve-only one) and prints its size"),
        ("scripts/local_docker.sh", "the main job with docker: train in one container, serve from another"),
        ("scripts/lock.sh", "re-resolves every lock file with hashes"),
        ("scripts/build_and_push.sh", "ECR: repository, login, push by immutable tag, the SBOM"),
    )),
    ("benchmarks", "scripts that print the tables of the docs and write their stamped results "
                   "(`python -m benchmarks.NAME`); `benchmarks/results/` holds the results files", ()),
    (None, None, (
        ("tests/", "mirrors `ncf/`, `container/`, `scripts/` and `benchmarks/`; `tests/test_docs.py` keeps docs/ "
                   "true; synthetic data only; moto as a real server; real gunicorn, Flask and docker"),
        ("docs/", "the reference pages ([index](README.md)); `docs/tables.py` writes their generated tables"),
        ("requirements/", "lock files with hashes: `image-cpu.lock`, `image-gpu.lock`, `image-serve.lock` (the "
                          "images' runtimes), `test.lock`, `bench.lock`, `aws.lock`, `sbom.lock`, and their `.in` files"),
        ("`Dockerfile`, `.dockerignore`", "the full image (train and serve) and the serve-only target; an allow-list"),
        ("`.ci/run`", "CI: environments, both images, the README's test command"),
    )),
)


def summary(path: Path) -> str:
    """The first sentence of a module's docstring, on one line."""
    doc = ast.get_docstring(ast.parse(path.read_text()))
    if not doc:
        return "(no docstring)"
    first = " ".join(doc.split("\n\n")[0].split())
    match = re.match(r"(.+?)(?<!\bal)(?<!e\.g)(?<!i\.e)\.(\s|$)", first)  # a sentence, not "et al." or "e.g."
    text = (match.group(1) if match else first).rstrip(".:; ")
    if len(text) > LONGEST:  # the gist: up to its first colon, else whole words up to the limit
        head = text.split(": ")[0]
        text = head if 20 <= len(head) <= LONGEST else text[:LONGEST].rsplit(" ", 1)[0] + " ..."
    return text.replace("|", "\\|")


#: The longest summary a row shows.
LONGEST = 180


def markdown() -> str:
    rows = ["| path | what it holds |", "|---|---|"]
    for folder, what, extra in SECTIONS:
        if folder is not None:
            rows.append(f"| `{folder}/` | {what} |")
            for module in sorted((ROOT / folder).glob("*.py")):
                if module.name == "__init__.py" and folder != "ncf":
                    continue
                rows.append(f"| `{folder}/{module.name}` | {summary(module)} |")
        for path, text in extra:
            name = path if path.startswith("`") else f"`{path}`"
            rows.append(f"| {name} | {text} |")
    return "\n".join(rows)
