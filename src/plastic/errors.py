"""User-facing errors.

A `UserError` is a mistake in what the user asked for (a bad flag value, a missing file, an unknown game). The CLI
prints its message on one line and exits with status 2; it never shows a traceback for one. Library code raises
`ValueError` for bad arguments, as Python code is expected to; the CLI converts those raised while validating input.
"""


class UserError(Exception):
    """A mistake in the user's input; the message names the bad value and what is allowed."""

    exit_code = 2
