"""The server's error answers: an HTTP status, a stable machine code and one human sentence."""
from __future__ import annotations


class ApiError(Exception):
    """An answer other than success; rendered as ``{"error": {"code": ..., "message": ...}}``.

    ``code`` is stable (clients branch on it); ``message`` is the sentence the CLI would print.
    """

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.headers = headers or {}

    def body(self) -> dict:
        return {"error": {"code": self.code, "message": self.message}}


# Every code the API answers with, for the docs and the tests.
CODES = {
    "bad_parameter": 400, "empty_upload": 400, "invalid_image": 400, "bad_request": 400,
    "host_not_allowed": 403, "origin_not_allowed": 403,
    "not_found": 404, "unknown_model": 404, "method_not_allowed": 405, "upload_timeout": 408,
    "model_unavailable": 409, "upload_too_large": 413, "too_many_pixels": 413, "too_many_parts": 413,
    "not_an_image": 415, "unsupported_media_type": 415,
    "input_too_large": 422, "not_exact_size": 422, "resize_too_large": 422,
    "input_rejected": 422, "not_a_face_model": 422, "face_model_unknown": 422,
    "internal_error": 500, "faces_unavailable": 501,
    "queue_full": 503, "out_of_memory": 503, "weights_unavailable": 503, "timeout": 504,
}


def api_error(code: str, message: str, headers: dict[str, str] | None = None) -> ApiError:
    """An ApiError whose status is the code's (one table, so a code never changes status)."""
    return ApiError(CODES[code], code, message, headers)


def echo(value: object, limit: int = 60) -> str:
    """A client's value quoted for a message, cut at ``limit`` characters: an answer never grows
    with what the client sent."""
    text = str(value)
    return repr(text) if len(text) <= limit else f"{text[:limit]!r}... ({len(text):,} characters)"
