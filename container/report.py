"""What a training job leaves beside its model: metrics.json, the hyperparameters used, a training curve, a
reliability diagram of the served probabilities, and TensorBoard scalars when the job asked for them
(SageMaker creates `output/tensorboard` then)."""

from __future__ import annotations

import json
from pathlib import Path

from ncf.history import EpochLog


def write_outputs(folder: Path, metrics: dict, hyperparameters: dict, history: list[EpochLog]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "metrics.json").write_text(json.dumps(metrics, indent=2, sort_keys=True))
    (folder / "hyperparameters.json").write_text(json.dumps(hyperparameters, indent=2, sort_keys=True))
    if history:
        plot_curve(history, folder / "training_curve.png")
    if metrics.get("calibration", {}).get("reliability"):
        plot_reliability(metrics["calibration"], folder / "reliability.png")


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_reliability(calibration: dict, path: Path) -> None:
    """Observed share of positives against the mean predicted probability per bin, on the balanced test set
    (each test positive with one sampled unseen item), for the served probabilities and the plain sigmoid."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.plot([0, 1], [0, 1], color="grey", linestyle="--", label="perfectly calibrated")
    for key, label in (("reliability", "served (calibrated)"), ("reliability_uncalibrated", "plain sigmoid")):
        bins = calibration.get(key) or []
        ax.plot([b["predicted"] for b in bins], [b["observed"] for b in bins], marker="o", label=label)
    ax.set(title="reliability on the balanced test set", xlabel="mean predicted probability",
           ylabel="share of held-out positives", xlim=(0, 1), ylim=(0, 1))
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_curve(history: list[EpochLog], path: Path) -> None:
    """Loss and validation HR@10 per validation round, at its fractional epoch (`EpochLog.position`), one line
    per stage (pretraining stages included)."""
    plt = _pyplot()
    fig, (loss_ax, hr_ax) = plt.subplots(1, 2, figsize=(10, 4))
    for stage in dict.fromkeys(e.stage for e in history):
        epochs = [e for e in history if e.stage == stage]
        loss_ax.plot([e.position for e in epochs], [e.loss for e in epochs], marker="o", label=stage)
        if all("hr@10" in e.validation for e in epochs):
            hr_ax.plot([e.position for e in epochs], [e.validation["hr@10"] for e in epochs], marker="o",
                       label=stage)
    loss_ax.set(title="training loss", xlabel="epoch", ylabel="binary cross-entropy")
    hr_ax.set(title="validation HR@10", xlabel="epoch", ylabel="HR@10")
    from matplotlib.ticker import MaxNLocator

    for ax in (loss_ax, hr_ax):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


class TensorBoardWriter:
    """Scalars per validation round into `folder`, named as the MetricDefinitions name them, at the round's
    step in its stage (`EpochLog.step`): a resumed job continues the curve instead of writing over it."""

    def __init__(self, folder: Path):
        import tensorflow as tf

        self._tf = tf
        self._writer = tf.summary.create_file_writer(str(folder))

    def __call__(self, entry: EpochLog) -> None:
        with self._writer.as_default(step=entry.step):
            self._tf.summary.scalar(f"{entry.stage}/train_loss", entry.loss)
            self._tf.summary.scalar(f"{entry.stage}/samples_per_s", entry.samples_per_second)
            for name, value in entry.validation.items():
                self._tf.summary.scalar(f"{entry.stage}/validation_{name}", value)
        self._writer.flush()
