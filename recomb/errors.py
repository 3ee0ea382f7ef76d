"""The one exception type for user mistakes.

Stages catch it and print its message as a single line, so every user-facing
failure (bad file, bad param, unmet quality bar) reads the same way.
"""


class RecombError(Exception):
    """A problem the user can fix: the message names the file or key and what is wrong."""
