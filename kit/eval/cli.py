"""`kit eval`."""

from kit.errors import NotBuiltYet


def evaluate():
    """Persona metrics for base vs tuned, with a report and charts."""
    raise NotBuiltYet("kit eval", 7)
