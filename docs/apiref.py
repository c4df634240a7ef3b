"""The library's API reference, generated from the public names' signatures and docstrings.

`docs/tables.py` writes it into docs/api.md (block `api-reference`) and `--check` fails when a signature or a
docstring changed without the page, so the reference cannot drift from the code. The list below is what the
library promises to callers; everything else in `ncf` is internal and may change between versions.
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import re

#: (module, names): the public API, in the order a reader meets it (docs/library.md's quickstart).
PUBLIC = (
    ("ncf.synthetic", ("SyntheticSpec", "generate")),
    ("ncf.data", ("read_interactions", "Columns", "Interactions")),
    ("ncf.movielens", ("load", "download")),
    ("ncf.dataset", ("prepare", "Dataset")),
    ("ncf.training", ("TrainConfig", "fit", "TrainResult", "to_artifact", "keras_logits")),
    ("ncf.evaluation", ("test_metrics", "TestSample", "against_popularity")),
    ("ncf.artifacts", ("save", "load", "ModelArtifact")),
    ("ncf.recommender", ("Recommender", "Recommendations", "Ranking")),
    ("ncf.metadata", ("ItemMetadata", "Column")),
    ("ncf.filters", ("compile", "parse", "parse_values", "FilterCache", "ItemFilter", "FilterError")),
    ("ncf.rerank", ("Promotion", "Diversity")),
    ("ncf.retrieval_choice", ("measure_recall", "choose", "prepare")),
    ("ncf.warmstart", ("inherited", "initialiser")),
    ("ncf.errors", ("NCFError", "DataError", "ConfigError", "ArtifactError", "UnknownIdError")),
)


def _doc(obj) -> str:
    """The docstring as Markdown text: dedented, `Args:`-style sections kept as they are."""
    doc = inspect.getdoc(obj) or "(no docstring)"
    return doc.strip()


def _signature(name: str, obj) -> str:
    try:
        sig = str(inspect.signature(obj))
    except (TypeError, ValueError):
        return name
    sig = re.sub(r" at 0x[0-9a-f]+", "", sig)  # default objects' addresses change every run
    return f"{name}{sig}"


def _public_methods(cls) -> list[tuple[str, object]]:
    own = []
    for name, member in vars(cls).items():
        if name.startswith("_"):
            continue
        if isinstance(member, (staticmethod, classmethod)):
            member = member.__func__
        if inspect.isfunction(member) or isinstance(member, property):
            own.append((name, member))
    return own


def _entry(module: str, name: str) -> str:
    obj = getattr(importlib.import_module(module), name, None)
    if obj is None:
        return f"### `{module}.{name}`\n\n(missing: the name is listed in docs/apiref.py but not defined)\n"
    kind = "class" if inspect.isclass(obj) else "function"
    lines = [f"### `{module}.{name}`", "", f"```python\n{kind} {_signature(name, obj)}\n```", "", _doc(obj), ""]
    if inspect.isclass(obj) and not issubclass(obj, BaseException):
        if dataclasses.is_dataclass(obj):
            fields = [f"`{f.name}`" for f in dataclasses.fields(obj) if not f.name.startswith("_")]
            if fields:
                lines += [f"Fields: {', '.join(fields)}.", ""]
        for method, member in _public_methods(obj):
            if isinstance(member, property):
                head = f"`{method}` (property)"
            else:
                head = f"`{_signature(method, member)}`"
            first = _doc(member).split("\n\n")[0].replace("\n", " ")
            lines.append(f"- {head}: {first}")
        lines.append("")
    return "\n".join(lines)


def markdown() -> str:
    out = []
    for module, names in PUBLIC:
        out += [_entry(module, name) for name in names]
    return "\n".join(out).rstrip()
