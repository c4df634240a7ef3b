"""Reading a channel as SageMaker presents it: a folder of files, or a Pipe-mode FIFO.

A FIFO can be read only once, so Pipe mode streams it through `ncf.streaming`: text is parsed in bounded
parts as it arrives, so neither the disk nor memory needs to hold the raw data whole.
"""

from __future__ import annotations

from pathlib import Path

from ncf.data import Columns, Interactions, read_interactions
from ncf.errors import DataError
from ncf.streaming import read_interactions_stream

from .train_config import Channel


def read_channel(channel: Channel, columns: Columns) -> Interactions:
    try:
        if channel.is_pipe:
            return _read_pipe(channel.source, columns)
        if not channel.source.exists():
            raise DataError(f"{channel.source} does not exist")
        return read_interactions(channel.source, columns)
    except DataError as e:
        raise DataError(f"channel {channel.name!r}: {e}") from e


def _read_pipe(fifo: Path, columns: Columns) -> Interactions:
    if not fifo.exists():
        raise DataError(f"Pipe mode FIFO {fifo} does not exist")
    with open(fifo, "rb") as stream:
        return read_interactions_stream(stream, str(fifo), columns)
