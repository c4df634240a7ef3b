"""The previous model a warm start continues: a model folder, or the `model` channel's model.tar.gz.

SageMaker's `model` channel delivers a previous job's `model.tar.gz` as it is; the archive is user data, so it
is checked before anything is unpacked (`train` maps the `ConfigError` it raises to exit 2): a truncated or
corrupt stream, a damaged header (tarfile would silently end the archive there), more entries or more bytes
than a model folder could hold, and an archive with two model folders are each refused with a one-line reason.
"""

from __future__ import annotations

import tarfile
from collections import Counter
from pathlib import Path, PurePosixPath

from ncf.errors import ArtifactError, ConfigError

#: The most entries an archive may hold: a model folder holds about a dozen, its SavedModel's included, and
#: every entry unpacked is a file created.
MAX_ENTRIES = 1_000
#: The most an archive may unpack to, from its entries' declared sizes: MAX_EXPANSION times the archive's own
#: size, or MIN_UNPACKED_LIMIT when that is more. A model's float32 weights and moments and its index arrays
#: barely compress, while gzip inflates a run of zeros about 1,000-fold.
MAX_EXPANSION = 20
MIN_UNPACKED_LIMIT = 1 << 30
#: What may follow the last entry: zero bytes, the end-of-archive marker and the padding to a record (10 KiB
#: for GNU tar and Python's tarfile). Anything else is data no header described: tarfile stops at a damaged
#: header as if the archive ended there, and would drop every entry after it without a word.
MAX_TRAILING_ZEROS = 1 << 20
#: The files of the model folder a warm start reads; the SavedModel is never loaded, so it is not unpacked.
READ = {"metadata.json", "vocabulary.npz", "weights.npz", "seen.npz", "popularity.npy", "optimizer.npz",
        "items.npz"}


def load_previous(source: Path):
    """The model a warm start continues: `source` is a model folder (metadata.json in it), or a folder holding
    one `*.tar.gz` of one, as SageMaker's `model` channel delivers the previous job's model.tar.gz. The archive
    may hold regular files and folders alone, inside it (no absolute paths, `..`, links or devices), within the
    limits above, with one model folder at its top or one level down, checked before anything is unpacked;
    tarfile's `data` filter applies where Python has it."""
    import tempfile

    from ncf import artifacts

    if (source / "metadata.json").is_file():
        return artifacts.load(source, optimizer=True)
    archives = sorted(source.glob("*.tar.gz")) if source.is_dir() else [source] if source.is_file() else []
    if len(archives) != 1:
        raise ConfigError(f"warm start: {source} holds neither a model folder (metadata.json) nor one model.tar.gz "
                          f"(found {[a.name for a in archives]})")
    with tempfile.TemporaryDirectory(prefix="ncf-warm-start-") as unpacked:
        return _unpacked_model(archives[0], Path(unpacked))


def _unpacked_model(archive_path: Path, target: Path):
    """The model folder inside `archive_path`, unpacked into `target` and loaded (arrays read into memory)."""
    import zlib

    from ncf import artifacts

    try:
        with tarfile.open(archive_path, "r:gz") as archive:
            folder, members = _model_members(archive_path, archive)
            extra = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
            archive.extractall(target, members=members, **extra)
    except EOFError as e:  # gzip's, on a stream cut short: not a TarError
        raise ConfigError(f"warm start: {archive_path} is truncated (copy it again): {e}") from e
    except (tarfile.TarError, OSError, zlib.error) as e:
        raise ConfigError(f"warm start: cannot unpack {archive_path}: {e}") from e
    try:
        return artifacts.load(target / folder, optimizer=True)
    except ArtifactError as e:  # named as the archive's file, not the temporary folder that goes with the job
        raise ArtifactError(f"warm start: {str(e).replace(str(target), str(archive_path))}") from e


def _model_members(archive_path: Path, archive: tarfile.TarFile) -> tuple[PurePosixPath, list[tarfile.TarInfo]]:
    """The one model folder in `archive` and the members of it to unpack, after every header was checked and
    nothing was found after the last entry. Headers are read one at a time, so a limit stops the reading
    before the rest of the stream is inflated."""
    limit = max(MIN_UNPACKED_LIMIT, MAX_EXPANSION * archive_path.stat().st_size)
    members, unsafe, size = [], [], 0
    for member in archive:
        if len(members) == MAX_ENTRIES:
            raise ConfigError(f"warm start: {archive_path.name} holds more than {MAX_ENTRIES:,} entries; a model "
                              "folder holds about a dozen")
        name = PurePosixPath(member.name)
        if not (member.isfile() or member.isdir()) or name.is_absolute() or ".." in name.parts:
            unsafe.append(member.name)
        size += member.size if member.isfile() else 0
        if size > limit:
            raise ConfigError(f"warm start: {archive_path.name} unpacks to more than {limit:,} bytes "
                              f"({MAX_EXPANSION} times its own size or {MIN_UNPACKED_LIMIT:,}, whichever is more); "
                              "a model's files barely compress")
        members.append(member)
    if unsafe:
        raise ConfigError(f"warm start: {archive_path.name} holds entries a model folder never has "
                          f"(links, devices, or paths out of it): {unsafe[:5]}")
    _check_nothing_after(archive_path, archive, members)
    names = [PurePosixPath(m.name) for m in members if m.isfile()]
    folders = sorted({n.parent for n in names if n.name == "metadata.json" and len(n.parts) <= 2})
    if not folders:
        raise ConfigError(f"warm start: {archive_path.name} holds no model folder (no metadata.json)")
    if len(folders) > 1:
        raise ConfigError(f"warm start: {archive_path.name} holds {len(folders)} model folders "
                          f"({', '.join(str(f) + '/' for f in folders)}); pack the one to continue alone")
    folder = folders[0]
    chosen = [m for m in members if m.isfile() and PurePosixPath(m.name).parent == folder
              and PurePosixPath(m.name).name in READ]
    twice = [name for name, n in Counter(PurePosixPath(m.name) for m in chosen).items() if n > 1]
    if twice:
        raise ConfigError(f"warm start: {archive_path.name} holds {twice[0]} twice; which one is the model's?")
    return folder, chosen


def _check_nothing_after(archive_path: Path, archive: tarfile.TarFile, members: list[tarfile.TarInfo]) -> None:
    """Refuse bytes after the last entry that are not the end-of-archive padding: a damaged header there."""
    stream = archive.fileobj
    stream.seek(archive.offset)
    read = 0
    while chunk := stream.read(1 << 16):
        read += len(chunk)
        if chunk.strip(b"\0") or read > MAX_TRAILING_ZEROS:
            last = f"after its entry {members[-1].name!r}" if members else "at its start"
            raise ConfigError(f"warm start: {archive_path.name} holds data no entry accounts for, {last} (byte "
                              f"{archive.offset:,} of the unpacked tar): a damaged header; copy it again")
