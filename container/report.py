"""What a training job leaves beside its model: metrics.json, the hyperparameters used, a training curve,
and TensorBoard scalars when the job asked for them (SageMaker creates `output/tensorboard` then)."""

from __future__ import annotations

import json
from pathlib import Path

from ncf.training import EpochLog


def write_outputs(folder: Path, metrics: dict, hyperparameters: dict, history: list[EpochLog]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "metrics.json").write_text(json.dumps(metrics, indent=2, sort_keys=True))
    (folder / "hyperparameters.json").write_text(json.dumps(hyperparameters, indent=2, sort_keys=True))
    if history:
        plot_curve(history, folder / "training_curve.png")


def plot_curve(history: list[EpochLog], path: Path) -> None:
    """Loss and validation HR@10 per epoch, one line per stage (pretraining stages included)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (loss_ax, hr_ax) = plt.subplots(1, 2, figsize=(10, 4))
    for stage in dict.fromkeys(e.stage for e in history):
        epochs = [e for e in history if e.stage == stage]
        loss_ax.plot([e.epoch for e in epochs], [e.loss for e in epochs], marker="o", label=stage)
        if all("hr@10" in e.validation for e in epochs):
            hr_ax.plot([e.epoch for e in epochs], [e.validation["hr@10"] for e in epochs], marker="o", label=stage)
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
    """Scalars per epoch into `folder`, named as the MetricDefinitions name them."""

    def __init__(self, folder: Path):
        import tensorflow as tf

        self._tf = tf
        self._writer = tf.summary.create_file_writer(str(folder))
        self._step = 0

    def __call__(self, entry: EpochLog) -> None:
        self._step += 1
        with self._writer.as_default(step=self._step):
            self._tf.summary.scalar(f"{entry.stage}/train_loss", entry.loss)
            self._tf.summary.scalar(f"{entry.stage}/samples_per_s", entry.samples_per_second)
            for name, value in entry.validation.items():
                self._tf.summary.scalar(f"{entry.stage}/validation_{name}", value)
        self._writer.flush()
