"""Errors that are the user's to fix: the CLI prints them plainly and exits non-zero."""


class UserError(Exception):
    """Bad input or option. The message names the file, column, option or field at fault."""

    exit_code = 2


class DataError(UserError):
    """Input data is malformed; nothing was written."""


class ValidationFailed(UserError):
    """A day failed its data-quality gate; nothing downstream ran."""

    exit_code = 3


class FeatureSetChanged(UserError):
    """The feature repo's towers no longer match the model's: a warm start cannot carry the weights."""
