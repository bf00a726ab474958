"""Earth Engine's error answers: Google's JSON error shape with the status names of google.rpc.Code."""

from __future__ import annotations

from typing import Any

STATUS_NAMES: dict[int, str] = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    409: "ABORTED",
    429: "RESOURCE_EXHAUSTED",
    499: "CANCELLED",
    500: "INTERNAL",
    501: "NOT_IMPLEMENTED",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}
"""HTTP status → google.rpc status name, as Google APIs put it in `error.status`."""

DEFAULT_MESSAGES: dict[int, str] = {
    429: "Too Many Requests: Request was rejected because the request rate or concurrency limit was exceeded.",
    500: "An internal error has occurred (fault injected by the local Earth Engine).",
    502: "Bad Gateway (fault injected by the local Earth Engine).",
    503: "The service is currently unavailable.",
    504: "Deadline exceeded.",
}
"""Messages for injected faults; the 429 wording is the real service's."""


class EEError(Exception):
    """An error the local Earth Engine answers with: HTTP status plus Earth Engine's message."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message

    def body(self) -> dict[str, Any]:
        """The JSON error body: `{"error": {"code", "message", "status"}}`."""
        return error_body(self.status, self.message)


def error_body(status: int, message: str | None = None) -> dict[str, Any]:
    """Google's JSON error shape for `status` (default message for injected faults)."""
    text = message if message is not None else DEFAULT_MESSAGES.get(status, f"HTTP {status} (injected fault)")
    return {"error": {"code": status, "message": text, "status": STATUS_NAMES.get(status, "UNKNOWN")}}


def invalid(message: str) -> EEError:
    """A 400 INVALID_ARGUMENT error."""
    return EEError(400, message)
