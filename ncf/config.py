"""`TrainConfig`: the library's hyperparameters, frozen and checked once, in every spelling a caller may use.

One object carries every setting from the edge (the container's hyperparameters, a benchmark, a notebook) to
the loop, so a bad value fails here, naming the setting, before any data is read or any model built. Words
are lower-cased and a boolean in any spelling (`spelling.spelled_bool`) stands for its mode, so `refit=Yes`
and `refit=true` are one setting. `batch_size` may stay `auto` until the data's size is known
(`defaults.resolved`); what trains is the resolved config.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from .defaults import AUTO
from .errors import ConfigError
from .kinds import MODEL_KINDS
from .spelling import spelled_bool

OPTIMIZERS = ("lazy_adam", "adam")
#: `auto` refits when validation held out every user's interaction, and not when it held out a sample of
#: users (`Dataset.with_validation_users`): then all others trained on theirs already, and a refit, which costs
#: as much as the search, would add back a few interactions of a few users.
REFIT_MODES = ("auto", "true", "false")
#: `towers`: the paper's GMF and MLP trained first, NeuMF starting from both (He et al. 2017, 3.4.1). `mf`: an MF
#: trained first, NeuMF's GMF half starting from its factors (`models.neumf_from_mf`) and trained on at
#: `finetune_rate` times the learning rate, then all stages refit like any model (`refit`). `auto`: `mf` for
#: NeuMF when validation held out every user, as for `refit` (MovieLens' small sets: the only NeuMF there that
#: the bootstrap calls no worse than MF and EASE^R), else `none`: on large data the MF stage is a second
#: search as long as the first (benchmarks: "NeuMF, today's default"), and a warm start keeps its own weights.
PRETRAIN_MODES = ("auto", "none", "towers", "mf")


@dataclass(frozen=True)
class TrainConfig:
    """Hyperparameters of the library. The container maps its SageMaker hyperparameters onto this."""

    # NeuMF is the default: the model this image exists for. MF, GMF and MLP are one hyperparameter away; MF at
    # 128 factors, the strongest of them, is within a paired bootstrap's noise of NeuMF on ml-latest-small and
    # below it on ml-100k (docs/benchmarks.md, "NeuMF, today's default"). NeuMF's widths (factors 64, MLP
    # 64-32-16) train faster than 128 / 128-64-32 at the same quality (`benchmarks/ab.py`); L2, learning rate
    # and negatives come from a search on ml-latest-small, run unchanged on ml-100k. `mlp_layers` and `dropout`
    # apply when `model` is neumf or mlp.
    model: str = "neumf"
    factors: int = 64
    mlp_layers: tuple[int, ...] = (64, 32, 16)
    dropout: float = 0.0
    l2: float = 1e-6
    learning_rate: float = 2e-3
    batch_size: int | str = "auto"  # `defaults.resolved`: 4,096 unless the data is too small for it
    epochs: int = 60
    negatives: int = 8
    patience: int = 5
    pretrain: str = "auto"
    alpha: float = 0.5
    finetune_rate: float = 0.1
    refit: str = "auto"
    seed: int = 0
    validation_negatives: int = 99
    optimizer: str = "lazy_adam"
    validate_every: int = 2 ** 25
    min_delta: float = 0.001

    def __post_init__(self):
        object.__setattr__(self, "mlp_layers", tuple(int(s) for s in self.mlp_layers))
        object.__setattr__(self, "refit", _mode(self.refit, "true", "false"))
        object.__setattr__(self, "pretrain", _mode(self.pretrain, "towers", "none"))
        if isinstance(self.batch_size, str) and self.batch_size.strip().lower() == AUTO:
            object.__setattr__(self, "batch_size", AUTO)
        checks = [
            (self.model in MODEL_KINDS, f"model must be one of {list(MODEL_KINDS)}, got {self.model!r}"),
            (self.optimizer in OPTIMIZERS, f"optimizer must be one of {list(OPTIMIZERS)}, got {self.optimizer!r}"),
            (self.factors >= 1, f"factors must be >= 1, got {self.factors}"),
            (0.0 <= self.dropout < 1.0, f"dropout must be in [0, 1), got {self.dropout}"),
            (self.l2 >= 0.0, f"l2 must be >= 0, got {self.l2}"),
            (self.learning_rate > 0.0, f"learning_rate must be > 0, got {self.learning_rate}"),
            (self.batch_size == AUTO or isinstance(self.batch_size, int) and self.batch_size >= 1,
             f"batch_size must be auto or an integer >= 1, got {self.batch_size!r}"),
            (self.epochs >= 1, f"epochs must be >= 1, got {self.epochs}"),
            (self.negatives >= 1, f"negatives must be >= 1, got {self.negatives}"),
            (self.patience >= 0, f"patience must be >= 0 (0 = no early stopping), got {self.patience}"),
            (self.refit in REFIT_MODES, f"refit must be one of {list(REFIT_MODES)}, got {self.refit!r}"),
            (self.validate_every >= 0, f"validate_every must be >= 0 (0 = once per epoch), got {self.validate_every}"),
            (0.0 <= self.min_delta < 1.0, f"min_delta must be in [0, 1), got {self.min_delta}"),
            (0.0 <= self.alpha <= 1.0, f"alpha must be in [0, 1], got {self.alpha}"),
            (self.pretrain in PRETRAIN_MODES,
             f"pretrain must be one of {list(PRETRAIN_MODES)} (true = towers, false = none), got {self.pretrain!r}"),
            (self.pretrain in ("auto", "none") or self.model == "neumf", "pretrain applies to model 'neumf' only"),
            (0.0 < self.finetune_rate <= 1.0, f"finetune_rate must be in (0, 1], got {self.finetune_rate}"),
            (self.validation_negatives >= 1, f"validation_negatives must be >= 1, got {self.validation_negatives}"),
            (len(self.mlp_layers) >= 2 and self.mlp_layers[0] % 2 == 0 and min(self.mlp_layers) >= 1,
             f"mlp_layers must be an even embedding width then hidden sizes, e.g. (64, 32, 16, 8), "
             f"got {self.mlp_layers}"),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(message)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["mlp_layers"] = list(self.mlp_layers)
        return d


def _mode(value, if_true: str, if_false: str) -> str:
    """A setting named by a word (`refit`'s, `pretrain`'s modes), lower-cased; a boolean in any spelling stands
    for `if_true` or `if_false` (`pretrain=true` is the paper's towers, its meaning before `mf` existed)."""
    flag = spelled_bool(value)
    return str(value).strip().lower() if flag is None else if_true if flag else if_false
