class EdgepruneError(Exception):
    """An error caused by the user's input or environment; the CLI prints it as one line and exits non-zero."""
