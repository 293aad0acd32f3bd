"""The one exception type that reaches the user as a message instead of a traceback."""


class UserError(Exception):
    """Something the user can fix (a missing dataset, a wrong override, a bad run folder).

    The command-line entry points print its message and exit with status 2; the message must say
    what was wrong and how to fix it.
    """
