"""The one rule for a boolean written as text: hyperparameters, environment variables and request fields all
read it here, so 'y' or 'off' cannot mean one thing to training and another to the server."""

from __future__ import annotations

_SPELLINGS = {"true": True, "1": True, "yes": True, "y": True, "on": True,
              "false": False, "0": False, "no": False, "n": False, "off": False}
#: The spellings, for messages and docs: "true/false, 1/0, yes/no, y/n, on/off" (any case, spaces around).
SPELLINGS = ", ".join(f"{yes}/{no}" for yes, no in zip(
    [s for s, v in _SPELLINGS.items() if v], [s for s, v in _SPELLINGS.items() if not v]))


def spelled_bool(value) -> bool | None:
    """A boolean in any spelling a job's caller may use (True, 1, ' Yes ', 'off'...), else None: the one rule
    for every setting that takes a boolean or, for its older spelling, a word (`pretrain`, `refit`), so the
    library and the container's hyperparameters cannot disagree on what 'y' means."""
    if isinstance(value, bool):
        return value
    return _SPELLINGS.get(str(value).strip().lower())  # numpy's booleans and integers too; 2 or 1.0 are not
