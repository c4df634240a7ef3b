"""`python -m ncf.retrieval_cli MODEL_DIR`: a trained model's first stage for two-stage top-k, measured and kept
in its folder (`retrieval_choice.prepare`), without training again: what training's end does for a new model.
The folder's other entries, its SavedModel included, stay as they are."""

from __future__ import annotations

import argparse
import logging
from dataclasses import replace
from pathlib import Path

from . import artifacts
from .recommender import Recommender
from .retrieval_choice import prepare


def main(argv: list[str] | None = None) -> None:
    """Measure the model in MODEL_DIR (exact top-10's time; with --force or when it misses the target, the
    first stage's build, shortlist and recall) and keep what was measured in the folder."""
    p = argparse.ArgumentParser(description=main.__doc__)
    p.add_argument("model_dir", type=Path)
    p.add_argument("--force", action="store_true", help="build the first stage even where exact top-k is fast")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    artifact = artifacts.load(args.model_dir, optimizer=True)
    section, index = prepare(Recommender(artifact, retrieval="exact"), force=args.force)
    metadata = {**artifact.metadata, "retrieval": section}
    artifacts.save(args.model_dir, replace(artifact, metadata=metadata, retrieval_index=index),
                   keep=(artifacts.SAVED_MODEL,))
    print(f"{args.model_dir}: " + ", ".join(f"{k} {v}" for k, v in section.items() if k != "tried"))


if __name__ == "__main__":
    main()
