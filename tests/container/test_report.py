"""What a job leaves beside its model for people to read: the curve and TensorBoard's scalars."""

from container.report import TensorBoardWriter, plot_curve
from ncf.training import EpochLog


def entry(epoch, round_=1, rounds=1, hr=0.5):
    return EpochLog(stage="neumf", epoch=epoch, epochs=9, loss=0.3, samples=100, seconds=1.0,
                    validation={"hr@10": hr}, eta_seconds=0.0, round=round_, rounds=rounds)


def test_rounds_of_one_epoch_sit_at_their_share_of_it_not_at_one_x():
    assert [entry(3, r, 4).position for r in (1, 2, 3, 4)] == [2.25, 2.5, 2.75, 3.0]
    assert [entry(2, r, 2).step for r in (1, 2)] == [3, 4]


def test_a_curve_of_several_rounds_an_epoch_is_drawn(tmp_path):
    plot_curve([entry(e, r, 2, hr=0.1 * e + 0.01 * r) for e in (1, 2) for r in (1, 2)], tmp_path / "c.png")
    assert (tmp_path / "c.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def scalar_steps(folder, tag):
    import tensorflow as tf

    steps = []
    for path in sorted(folder.glob("events.out.tfevents.*")):
        for event in tf.compat.v1.train.summary_iterator(str(path)):
            steps += [event.step for value in event.summary.value if value.tag == tag]
    return sorted(steps)


def test_a_resumed_job_continues_tensorboards_steps_instead_of_writing_over_them(tmp_path):
    first = TensorBoardWriter(tmp_path)
    for e in (1, 2):
        for r in (1, 2):
            first(entry(e, r, 2))
    resumed = TensorBoardWriter(tmp_path)  # a new process after a spot interruption, from epoch 3
    resumed(entry(3, 1, 2))
    assert scalar_steps(tmp_path, "neumf/train_loss") == [1, 2, 3, 4, 5]
