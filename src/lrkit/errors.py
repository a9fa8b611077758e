"""The one exception family lrkit raises for bad input, so callers and the CLI can tell it apart."""


class LrkitError(ValueError):
    """Bad input or an impossible request; the message names the bad value and what to do."""


def require(condition: bool, message: str) -> None:
    """Raise :class:`LrkitError` with ``message`` unless ``condition`` holds."""
    if not condition:
        raise LrkitError(message)


def plain_int(value: object) -> object:
    """``value`` as a Python int when it is an integer of another kind (numpy's ``np.int64``
    from an array, a 0-dim integer tensor), else unchanged: the checks that follow then see
    the number the user meant, and a bool or a float is still refused by them."""
    if isinstance(value, bool) or isinstance(value, int):
        return value
    index = getattr(value, "__index__", None)
    if index is None or getattr(value, "dtype", None) is not None and getattr(value, "shape", ()) != ():
        return value
    try:
        return int(index())
    except (TypeError, ValueError):
        return value
