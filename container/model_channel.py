"""The previous model a warm start continues: a model folder, or the `model` channel's model.tar.gz.

SageMaker's `model` channel delivers a previous job's `model.tar.gz` as it is; the archive is user data, so it
is checked before anything is unpacked (`train` maps the `ConfigError` it raises to exit 2).
"""

from __future__ import annotations

from pathlib import Path

from ncf.errors import ConfigError


def load_previous(source: Path):
    """The model a warm start continues: `source` is a model folder (metadata.json in it), or a folder holding
    one `*.tar.gz` of one, as SageMaker's `model` channel delivers the previous job's model.tar.gz. The archive
    may hold regular files and folders alone, inside it (no absolute paths, `..`, links or devices), checked
    before anything is unpacked, and tarfile's `data` filter applies where Python has it."""
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
    import tarfile

    from ncf import artifacts

    try:
        with tarfile.open(archive_path, "r:gz") as archive:
            members = archive.getmembers()
            unsafe = [m.name for m in members if not (m.isfile() or m.isdir()) or m.name.startswith("/")
                      or ".." in Path(m.name).parts]
            if unsafe:
                raise ConfigError(f"warm start: {archive_path.name} holds entries a model folder never has "
                                  f"(links, devices, or paths out of it): {unsafe[:5]}")
            extra = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
            archive.extractall(target, members=members, **extra)
    except (tarfile.TarError, OSError) as e:
        raise ConfigError(f"warm start: cannot unpack {archive_path}: {e}") from e
    folders = [target] + [d for d in target.iterdir() if d.is_dir()]
    found = [d for d in folders if (d / "metadata.json").is_file()]
    if not found:
        raise ConfigError(f"warm start: {archive_path.name} holds no model folder (no metadata.json)")
    return artifacts.load(found[0], optimizer=True)
