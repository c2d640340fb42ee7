"""The one error type users see: what went wrong, where, and how to fix it."""


class KitError(Exception):
    """A user-facing failure. The CLI prints it without a traceback and exits 2."""

    def __init__(self, message: str, fix: str | None = None):
        super().__init__(message)
        self.message = message
        self.fix = fix

    def __str__(self) -> str:
        return self.message if not self.fix else f"{self.message}\n  fix: {self.fix}"


class NotBuiltYet(KitError):
    """A command of the contract whose stage has not been built yet: said plainly, exit 3."""

    def __init__(self, command: str, issue: int):
        super().__init__(f"`{command}` is not built yet (tracked in issue {issue}).")
        self.command = command
