"""Reading a channel as SageMaker presents it: a folder of files, or a Pipe-mode FIFO.

A FIFO can be read only once and cannot be sniffed then re-opened, so Pipe mode streams it in 1 MiB chunks
into one temporary file (constant memory, one copy on disk) and reads that like any other file. The copy
needs disk as large as the data (a full disk is a DataError that says so; FastFile mode needs none).
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from ncf.data import Columns, Interactions, read_interactions
from ncf.errors import DataError

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
    with tempfile.TemporaryDirectory(prefix="ncf-pipe-") as tmp:
        staged = Path(tmp) / fifo.name
        try:
            with open(fifo, "rb") as src, open(staged, "wb") as dst:
                shutil.copyfileobj(src, dst, 1 << 20)
        except OSError as e:  # a full disk, above all: the data is larger than the instance's volume
            raise DataError(f"Pipe mode FIFO {fifo} could not be staged to {tmp} after {_size(staged)} "
                            f"({e.strerror or e}); Pipe mode is staged on local disk before reading, so for "
                            "data larger than the training volume use FastFile mode (streamed from S3)") from e
        return read_interactions(staged, columns)


def _size(path: Path) -> str:
    try:
        return f"{path.stat().st_size / 2**20:,.0f} MiB"
    except OSError:
        return "0 MiB"
