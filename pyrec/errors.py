"""Errors of the control plane, each with the HTTP status and the exact message of the
Record API contract (spec sections 3-6)."""
from __future__ import annotations

__all__ = ["ApiError"]


class ApiError(Exception):
    """A request the Record API refuses: `status` (400, 401, 404, 409, ...) and `message`
    (the text inside "[HTTP] <message> (<status>)")."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"{status}: {message}")
        self.status = status
        self.message = message
