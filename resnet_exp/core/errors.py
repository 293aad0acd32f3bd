"""The one exception type that reaches the user as a message instead of a traceback, and the one
way it becomes that message and exit status 2 (console.command wraps every command line in it)."""

from __future__ import annotations

import sys

USER_ERROR_EXIT = 2  # as argparse exits on a bad argument


class UserError(Exception):
    """Something the user can fix (a missing dataset, a wrong override, a bad run folder).

    The command-line entry points print its message and exit with status 2; the message must say
    what was wrong and how to fix it.
    """


def report_error(error: UserError | str) -> int:
    """Print `error: <message>` on stderr; returns the exit status for it."""
    print(f"error: {error}", file=sys.stderr)
    return USER_ERROR_EXIT
