"""The error jaxrnn raises for bad input, importable without JAX (the command line uses it)."""


class InputError(ValueError, TypeError):
    """An argument of the wrong shape, dtype or value was passed to a jaxrnn function.

    Subclasses both ``ValueError`` and ``TypeError`` so that either ``except`` clause catches it.
    The message names the function, the argument, what was expected and what was given.
    """


def fail(fn: str, message: str, hint: str = "") -> None:
    """Raises `InputError` with the message ``"{fn}: {message}; {hint}"``."""
    raise InputError(f"{fn}: {message}" + (f"; {hint}" if hint else ""))
