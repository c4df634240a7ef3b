"""The few exception types the library raises.

Callers (the container's `train` and `serve`) map each type to an exit code or an HTTP status in one
place, so every error the library raises on purpose is one of these, carrying a message a person can act on.
"""


class NCFError(Exception):
    """Base class: anything the library raises on purpose."""


class DataError(NCFError, ValueError):
    """Input interactions are unreadable or invalid; the message names the file, line or column."""


class ConfigError(NCFError, ValueError):
    """A hyperparameter or option is out of range or inconsistent with another."""


class ArtifactError(NCFError):
    """A model folder is missing, corrupt, or written by an incompatible format version."""


class UnknownIdError(NCFError, KeyError):
    """A raw user or item id that the model has never seen, where no fallback makes sense."""

    def __init__(self, kind: str, ids):
        self.kind = kind
        self.ids = [i.item() if hasattr(i, "item") else i for i in ids]  # numpy scalars print as np.int64(9)
        shown = ", ".join(repr(i) for i in self.ids[:5])
        more = f" and {len(self.ids) - 5} more" if len(self.ids) > 5 else ""
        label = f"{kind} id" if kind else "id"
        super().__init__(f"unknown {label}{'s' if len(self.ids) > 1 else ''}: {shown}{more}")

    def __str__(self) -> str:  # KeyError would repr() the message
        return self.args[0]


class Interrupted(NCFError):
    """Training was asked to stop (SIGTERM); the last complete checkpoint is where a new run resumes."""


class ClusterError(NCFError):
    """The hosts of a distributed job cannot form one cluster, disagree on their data, or lost a peer."""
