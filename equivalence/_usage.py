"""The command line's one error type (``equivalence.cli`` and its training check)."""
from __future__ import annotations


class UsageError(SystemExit):
    """A bad argument or input file: ``main`` prints ``error: <message>`` and exits with 2."""

    def __init__(self, message: str):
        super().__init__(2)
        self.message = message

    def __str__(self) -> str:
        return self.message
