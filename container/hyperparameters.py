"""The training job's hyperparameters: one documented schema, strings at the edge, typed inside.

SageMaker hands every value over as a string, and clients disagree on how: the Python SDK v2 JSON-quotes
strings (`"\\"neumf\\""`), v3 sends `json.dumps` of non-strings (`"false"`, `"[64, 32]"`) and strings raw,
the console sends raw text (`neumf`, `64,32`). Each value is decoded with `json.loads`, falling back to the
raw text, then converted by the parameter's own type: `"False"`, `false` and `0` are all False, and a list
may be JSON or comma-separated. A key the schema does not know, or a value its type refuses, fails the job
with a message naming the key, the value and what is allowed. Keys starting with `sagemaker_` (the SDK's)
and `_tuning_objective_metric` (automatic model tuning's) are ignored.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field, fields
from typing import Any, Callable, Mapping

from ncf.data import Columns
from ncf.defaults import AUTO
from ncf.errors import ConfigError
from ncf.training import TrainConfig

_NONE = {"", "none", "null"}


def _decode(raw: Any) -> Any:
    if not isinstance(raw, str):
        return raw
    try:
        return json.loads(raw)
    except ValueError:
        return raw.strip()


def to_int(value: Any) -> int:
    if isinstance(value, bool):
        raise ValueError("expected an integer, not a boolean")
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        text = value.strip()
        try:
            return int(text)
        except ValueError:
            try:
                number = float(text)
            except ValueError:
                number = math.nan
            if number.is_integer():
                return int(number)
    raise ValueError("expected an integer")


def to_float(value: Any) -> float:
    if isinstance(value, bool):
        raise ValueError("expected a number, not a boolean")
    try:
        number = float(value.strip() if isinstance(value, str) else value)
    except (TypeError, ValueError):
        raise ValueError("expected a number") from None
    if not math.isfinite(number):
        raise ValueError("expected a finite number")
    return number


def to_int_list(value: Any) -> tuple[int, ...]:
    if isinstance(value, str):
        text = value.strip().strip("[]()")
        items: list[Any] = [part for part in text.replace(";", ",").split(",") if part.strip()]
    elif isinstance(value, (list, tuple)):
        items = list(value)
    else:
        items = [value]
    if not items:
        raise ValueError("expected a non-empty list of integers, e.g. [128, 64, 32] or 128,64,32")
    try:
        return tuple(to_int(item) for item in items)
    except ValueError:
        raise ValueError("expected a list of integers, e.g. [128, 64, 32] or 128,64,32") from None


def to_str(value: Any) -> str:
    if isinstance(value, (dict, list)):
        raise ValueError("expected text")
    return str(value).strip()


def optional(convert: Callable[[Any], Any]) -> Callable[[Any], Any]:
    def parse(value: Any) -> Any:
        if value is None or (isinstance(value, str) and value.strip().lower() in _NONE):
            return None
        return convert(value)
    parse.__name__ = f"optional {convert.__name__}"
    return parse


@dataclass(frozen=True)
class Param:
    name: str
    convert: Callable[[Any], Any]
    help: str


_TRAIN_HELP = {
    "model": "neumf, mf, gmf or mlp (NeuMF by default; MF trains faster, ranks within noise or below: Benchmarks)",
    "factors": "GMF / MF embedding size",
    "mlp_layers": "MLP: concatenated embedding width, then hidden sizes, e.g. [128, 64, 32]",
    "dropout": "dropout after each MLP hidden layer, in [0, 1)",
    "l2": "L2 regularisation of MLP kernels and embeddings (with lazy_adam: of the rows a step looks up)",
    "learning_rate": "Adam's learning rate",
    "batch_size": "examples per training step, over all hosts and GPUs together; auto: 4096, or less when an "
                  "epoch would make under 100 steps (a power of two, at least 256: Training, data-dependent "
                  "defaults)",
    "epochs": "maximum epochs",
    "negatives": "sampled negatives per positive, redrawn each epoch",
    "patience": "early stopping: validation rounds (epochs, or parts of long ones) without better HR@10 (0 = off)",
    "pretrain": "NeuMF: auto (mf when validation held out every user, i.e. up to 20,000 users, or users or items "
                "average under 20 training interactions; else none); none; towers (true: GMF and MLP first, as "
                "the paper); mf (an MF first, NeuMF's GMF half starting from it)",
    "alpha": "pretrain=towers: GMF's share of NeuMF's head",
    "finetune_rate": "pretrain=mf: NeuMF's learning rate after the MF, as a fraction of learning_rate, in (0, 1]",
    "refit": "after early stopping, train afresh on training + validation for the chosen epochs, every stage (not "
             "with pretrain=towers): true, false, or auto (when validation held out every user, i.e. up to "
             "20,000 users)",
    "seed": "random seed (weights, negatives, candidates)",
    "validation_negatives": "negatives per validation positive",
    "validate_every": "training samples between validations inside a long epoch, in equal rounds (0 = once per "
                      "epoch)",
    "min_delta": "early stopping: the least rise of validation HR@10 that counts as better (a tie on HR@10 "
                 "with higher NDCG@10 counts too)",
    "optimizer": "lazy_adam (updates only the embedding rows a batch touches; one host) or adam (Keras' dense Adam)",
}
def auto_or_int(value: Any) -> int | str:
    """`auto` (any case: the library chooses from the data, `ncf.defaults`) or an integer."""
    if isinstance(value, str) and value.strip().lower() == AUTO:
        return AUTO
    try:
        return to_int(value)
    except ValueError:
        raise ValueError("expected auto or an integer") from None


_CONVERTERS = {int: to_int, float: to_float, str: to_str, tuple: to_int_list}
#: Settings whose default is `auto` but whose value is a number.
_AUTO_NUMBERS = {"batch_size": auto_or_int}

SCHEMA: dict[str, Param] = {
    **{f.name: Param(f.name, _AUTO_NUMBERS.get(f.name) or _CONVERTERS[type(getattr(TrainConfig(), f.name))],
                     _TRAIN_HELP[f.name])
       for f in fields(TrainConfig)},
    "test_k": Param("test_k", to_int, "latest interactions per user held out for test (1 = LOO-99, 10 = the blog)"),
    "validation_k": Param("validation_k", to_int, "latest training interactions per user for validation (0 = none)"),
    "min_rating": Param("min_rating", optional(to_float), "keep only ratings >= this as positives (none = all)"),
    "threshold": Param("threshold", to_float, "probability at or above which a user is predicted to like an item"),
    "test_users": Param("test_users", optional(to_int), "test users ranked against 99 sampled items (none = at "
                        "most 20,000; each metric's standard error is in metrics.json)"),
    "full_ranking_users": Param("full_ranking_users", optional(to_int), "test users whose every unseen item is "
                                "ranked for the full_ metrics (none = 50M scored cells' worth, 500 to 5,000; "
                                "past 200,000 items down to 100)"),
    "user_column": Param("user_column", optional(to_str), "name of the user id column (none = recognise)"),
    "item_column": Param("item_column", optional(to_str), "name of the item id column (none = recognise)"),
    "rating_column": Param("rating_column", optional(to_str), "name of the rating column (none = recognise)"),
    "timestamp_column": Param("timestamp_column", optional(to_str), "name of the timestamp column (none = recognise)"),
}


@dataclass(frozen=True)
class Hyperparameters:
    """Everything a training job can be told, typed and validated."""

    train: TrainConfig = TrainConfig()
    #: The names the job set (the rest are defaults): a warm start inherits the shapes a job did not set.
    given: frozenset = field(default=frozenset(), compare=False)
    test_k: int = 1
    validation_k: int = 1
    min_rating: float | None = None
    threshold: float = 0.5
    test_users: int | None = None
    full_ranking_users: int | None = None
    columns: Columns = Columns()

    def __post_init__(self):
        if self.test_k < 1:
            raise ConfigError(f"hyperparameter 'test_k' must be >= 1, got {self.test_k}")
        if self.validation_k < 0:
            raise ConfigError(f"hyperparameter 'validation_k' must be >= 0, got {self.validation_k}")
        if not 0.0 <= self.threshold <= 1.0:
            raise ConfigError(f"hyperparameter 'threshold' must be in [0, 1], got {self.threshold}")
        for name in ("test_users", "full_ranking_users"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise ConfigError(f"hyperparameter {name!r} must be >= 1 or none, got {getattr(self, name)}")

    @classmethod
    def parse(cls, raw: Mapping[str, Any]) -> "Hyperparameters":
        """From hyperparameters.json's object (string values, or already-typed values from local runs)."""
        if not isinstance(raw, Mapping):
            raise ConfigError("hyperparameters.json must hold a JSON object of names to values")
        values: dict[str, Any] = {}
        for key, value in raw.items():
            if key.startswith("sagemaker_") or key == "_tuning_objective_metric":
                continue
            if key not in SCHEMA:
                raise ConfigError(f"unknown hyperparameter {key!r}; known: {', '.join(sorted(SCHEMA))}")
            try:
                values[key] = SCHEMA[key].convert(_decode(value))
            except ValueError as e:
                raise ConfigError(f"hyperparameter {key!r} = {value!r}: {e} ({SCHEMA[key].help})") from None
        train_fields = {f.name for f in fields(TrainConfig)}
        try:
            train = TrainConfig(**{k: v for k, v in values.items() if k in train_fields})
        except ConfigError as e:
            raise ConfigError(f"hyperparameter {e}") from None
        column = {role: values.get(f"{role}_column") for role in ("user", "item", "rating", "timestamp")}
        rest = {k: v for k, v in values.items() if k not in train_fields and not k.endswith("_column")}
        return cls(train=train, columns=Columns(**column), given=frozenset(values), **rest)

    def to_dict(self) -> dict:
        """The values actually used, as written to output/data/hyperparameters.json."""
        return {**self.train.to_dict(), "test_k": self.test_k, "validation_k": self.validation_k,
                "min_rating": self.min_rating, "threshold": self.threshold, "test_users": self.test_users,
                "full_ranking_users": self.full_ranking_users,
                **{f"{role}_column": value for role, value in vars(self.columns).items()}}


def _shown(value: Any) -> str:
    if value is None:
        return "none"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (list, tuple)):
        return ",".join(map(str, value))
    return str(value)


#: What each hyperparameter accepts, as the table shows it: an interval (`>= 1`, `[0, 1)`, `(0, 1]`), a list of
#: words, or a phrase. tests/container/test_hyperparameters.py checks every interval's bounds and every word
#: against what parsing accepts and refuses, so the table cannot promise what the code refuses.
VALID = {
    "model": "neumf, mf, gmf, mlp", "factors": ">= 1", "mlp_layers": "an even first width, then hidden sizes",
    "dropout": "[0, 1)", "l2": ">= 0", "learning_rate": "> 0", "batch_size": "auto, or >= 1", "epochs": ">= 1",
    "negatives": ">= 1", "patience": ">= 0", "pretrain": "auto, none, towers, mf", "alpha": "[0, 1]",
    "finetune_rate": "(0, 1]", "refit": "auto, true, false", "seed": "any integer", "validation_negatives": ">= 1",
    "validate_every": ">= 0", "min_delta": "[0, 1)", "optimizer": "lazy_adam, adam", "test_k": ">= 1",
    "validation_k": ">= 0", "min_rating": "any number, or none", "threshold": "[0, 1]",
    "test_users": ">= 1, or none", "full_ranking_users": ">= 1, or none",
    **{f"{what}_column": "a column's name, or none" for what in ("user", "item", "rating", "timestamp")},
}

_TYPES = {"to_int": "integer", "to_float": "number", "to_str": "text", "to_int_list": "list of integers",
          "auto_or_int": "integer or auto"}


def type_name(param: Param) -> str:
    """The type a hyperparameter takes, in words, from its converter."""
    name = param.convert.__name__
    if name.startswith("optional "):
        return f"{_TYPES[name.removeprefix('optional ')]} or none"
    return _TYPES[name]


def markdown_table() -> str:
    """docs/training.md's hyperparameter table, from `SCHEMA`, `VALID` and the defaults (a test keeps the page
    equal to it): `python -m container.hyperparameters` prints it."""
    defaults = Hyperparameters().to_dict()
    rows = ["| name | type | valid values | default | meaning |", "|---|---|---|---|---|"]
    rows += [f"| `{name}` | {type_name(param)} | {VALID[name]} | {_shown(defaults[name])} | {param.help} |"
             for name, param in SCHEMA.items()]
    return "\n".join(rows)


if __name__ == "__main__":
    print(markdown_table())
