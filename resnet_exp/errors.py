"""The one exception type that reaches the user as a message instead of a traceback, and the one
way every command line turns it into that message and exit status 2."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable

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


def command(main: Callable[..., int]) -> Callable[..., int]:
    """A command line's `main(argv) -> status`, with a UserError reported as one line, status 2,
    and the third-party notes no user can act on kept off the console (console.py)."""

    @functools.wraps(main)
    def wrapped(*args, **kwargs) -> int:
        from resnet_exp.console import quiet_known_warnings

        quiet_known_warnings()
        try:
            return main(*args, **kwargs)
        except UserError as e:
            return report_error(e)

    return wrapped
