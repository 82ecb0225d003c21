"""Errors of the data stage."""


class DatasetError(ValueError):
    """A dataset that is missing, corrupt, or does not match its declaration."""
