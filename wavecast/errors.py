"""Errors that say the input is wrong: they fail a run at once and are never retried."""


class InvalidInputError(ValueError):
    """Bad configuration or bad data; the message is one line a person can act on."""
