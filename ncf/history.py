"""What a training run did: one `EpochLog` per validation round, and the `TrainResult` that holds them.

The epoch log is read by more than the loop that writes it: checkpoints store it so a resumed job keeps its
curve, the container prints its line for SageMaker's MetricDefinitions and plots it, and TensorBoard steps
come from it. It lives apart from the loop so that those readers need neither Keras nor the loop to read it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .calibration import Calibration
from .config import TrainConfig


@dataclass(frozen=True)
class EpochLog:
    """What one epoch (or one validation round of a long epoch) did; `stage` is 'gmf', 'mlp' or 'mf' while
    pretraining, else the model kind."""

    stage: str
    epoch: int
    epochs: int
    loss: float
    samples: int
    seconds: float
    validation: dict[str, float]
    eta_seconds: float
    round: int = 1  # validation rounds of a long epoch (`TrainConfig.validate_every`)
    rounds: int = 1

    @property
    def samples_per_second(self) -> float:
        return self.samples / self.seconds if self.seconds > 0 else float("inf")

    @property
    def position(self) -> float:
        """Epochs trained at the end of this round (2.5 after the first of two rounds of epoch 3): where a
        curve plots it, so the rounds of one epoch do not stack at one x."""
        return self.epoch - 1 + self.round / self.rounds

    @property
    def step(self) -> int:
        """This round's ordinal in its stage, counting every round of the epochs before: TensorBoard's step,
        the same whether the job ran through or resumed from a checkpoint."""
        return (self.epoch - 1) * self.rounds + self.round

    def line(self) -> str:
        """The stable, regex-friendly line of the epoch (MetricDefinitions read these)."""
        metrics = "".join(f" validation:{k}={v:.4f}" for k, v in self.validation.items())
        part = f" round={self.round}/{self.rounds}" if self.rounds > 1 else ""
        return (
            f"stage={self.stage} epoch={self.epoch}/{self.epochs}{part} train:loss={self.loss:.4f}{metrics} "
            f"samples_per_s={self.samples_per_second:.0f} seconds={self.seconds:.1f} eta_s={self.eta_seconds:.0f}"
        )


@dataclass
class TrainResult:
    """A trained model and what chose it: its rounds' log, the best epoch and its validation, calibration."""

    model: object  # keras.Model; typed loosely so importing this module's names needs no Keras
    config: TrainConfig
    history: list[EpochLog] = field(default_factory=list)
    best_epoch: int = 0
    best_validation: dict[str, float] = field(default_factory=dict)
    #: What the served probability means (`calibration`): fitted on validation by `fit`.
    calibration: Calibration = field(default_factory=Calibration)
    #: The optimiser that trained `model` last (its state goes into the model folder: `optimizer_state`).
    optimizer: object = None
    #: With `pretrain`: each pretraining stage's best epoch, which its refit trains for.
    pretrained: dict[str, int] = field(default_factory=dict)
    #: The round of `best_epoch` whose weights were chosen, of how many rounds that epoch had: a refit trains
    #: whole epochs (`best_epoch` of them), so with several rounds it trains a little past the chosen point.
    best_round: tuple[int, int] = (1, 1)
    #: The chosen model against popularity on the validation candidates (`evaluation.against_popularity`);
    #: empty without validation.
    against_popularity: dict = field(default_factory=dict)

    def throughput(self) -> float:
        """Mean training samples per second of the model's own epochs (not pretraining, not the refit)."""
        final = [e for e in self.history if e.stage == self.config.model]
        seconds = sum(e.seconds for e in final)
        return sum(e.samples for e in final) / seconds if seconds else float("nan")
