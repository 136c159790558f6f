"""One exception hierarchy. Every error carries a hint that tells the user what to do next."""
from __future__ import annotations


class InfercmpError(Exception):
    """Base class. `exit_code` is what the CLI returns; `hint` is printed under the message."""

    exit_code = 2

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message if not self.hint else f"{self.message}\n  hint: {self.hint}"


class UsageError(InfercmpError):
    """A command-line or API argument is wrong (unknown backend, option, value...)."""


class ModelError(InfercmpError):
    """The model file is missing, not ONNX, truncated, invalid or unsafe."""


class InputError(InfercmpError):
    """Feeds do not match the model's input signature."""


class BackendError(InfercmpError):
    """A backend could not open or run the model. Inside a worker this becomes that variant's status."""

    def __init__(self, message: str, hint: str | None = None, status: str = "failed"):
        super().__init__(message, hint)
        self.status = status


class UnsupportedError(BackendError):
    """The backend lacks an op (or an attribute value / dtype) the model needs."""

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message, hint, status="unsupported")


class ReportError(InfercmpError):
    """A saved report or bundle is corrupt, truncated or from a newer schema."""
