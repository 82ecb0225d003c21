"""Errors of the data stage."""


class DatasetError(ValueError):
    """A dataset that is missing, corrupt, or does not match its declaration."""


class DeclarationError(DatasetError):
    """An image that contradicts the dataset's declared ``key`` (``image_size`` or ``channels``)."""

    def __init__(self, key: str, message: str):
        super().__init__(message)
        self.key = key
