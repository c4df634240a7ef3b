"""Reading a channel as SageMaker presents it: a folder of files, or a Pipe-mode FIFO.

A FIFO can be read only once, so Pipe mode streams it through `ncf.streaming`: text is parsed in bounded
parts as it arrives, so neither the disk nor memory needs to hold the raw data whole. The `items` channel is a
table read whole (File or FastFile mode), once the item vocabulary is known.
"""

from __future__ import annotations

from pathlib import Path

from ncf.data import Columns, Interactions, read_interactions
from ncf.errors import DataError
from ncf.metadata import ItemMetadata
from ncf.streaming import read_interactions_stream
from ncf.vocab import Vocabulary

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


def read_items_channel(source: Path, items: Vocabulary) -> ItemMetadata:
    """The `items` channel's table aligned with the trained item vocabulary (`ncf.items`)."""
    from ncf.items import read_item_metadata

    try:
        return read_item_metadata(source, items)
    except DataError as e:
        raise DataError(f"channel 'items': {e}") from e
