class EdgepruneError(Exception):
    """An error caused by the user's input or environment; the CLI prints it as one line and exits non-zero."""


class RankFailed(EdgepruneError):
    """Under torchrun: rank 0 failed and reports why itself; the other processes stop without a message."""
