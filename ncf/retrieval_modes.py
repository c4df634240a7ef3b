"""The names of the paths that answer top-k (`retrieval_choice.choose`), in a module that imports nothing.

`serve` checks `NCF_RETRIEVAL` before gunicorn starts, in a Python process of its own: importing
`retrieval_choice` there would import numpy once more on every cold start, for three words.
"""

MODES = ("auto", "exact", "two-stage")
