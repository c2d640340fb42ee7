"""The one error type users see: what went wrong, where, and how to fix it."""


class KitError(Exception):
    """A user-facing failure. The CLI prints it without a traceback and exits 2."""

    def __init__(self, message: str, fix: str | None = None):
        super().__init__(message)
        self.message = message
        self.fix = fix

    def __str__(self) -> str:
        return self.message if not self.fix else f"{self.message}\n  fix: {self.fix}"
