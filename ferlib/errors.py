"""User-facing errors.

A `FerlibError` carries a message written for the person running the study: what went
wrong, which file or value, what was expected and what to do. The CLI prints it without a
traceback; notebooks show it as the exception message.
"""


class FerlibError(Exception):
    """An error caused by input the user can fix (a path, a name, a number)."""


class DatasetNotFound(FerlibError):
    """A real dataset's root is missing or does not look like the owners' layout."""


class UnknownName(FerlibError):
    """A preset, dataset, protocol or paper name that is not one of the valid ones."""

    def __init__(self, kind: str, name: str, valid):
        valid = sorted(valid)
        super().__init__(f"unknown {kind} {name!r}; valid {kind}s are: {', '.join(valid)}")
        self.kind, self.name, self.valid = kind, name, valid


class CorruptImage(FerlibError):
    """An image file that cannot be decoded."""
