"""The error every command turns into a one-paragraph message instead of a traceback."""


class DataError(RuntimeError):
    """A file is missing, corrupt or unreadable; the message says which file and what to do."""
