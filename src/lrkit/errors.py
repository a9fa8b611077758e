"""The one exception family lrkit raises for bad input, so callers and the CLI can tell it apart."""


class LrkitError(ValueError):
    """Bad input or an impossible request; the message names the bad value and what to do."""


def require(condition: bool, message: str) -> None:
    """Raise :class:`LrkitError` with ``message`` unless ``condition`` holds."""
    if not condition:
        raise LrkitError(message)
