"""JSON errors: every 4xx/5xx answer is ``{"error": <stable code>, "message": <text>}``."""

from __future__ import annotations

from flask import Flask, current_app, jsonify, request
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge


class APIError(Exception):
    """An error with an HTTP status and a stable machine-readable ``code``."""

    def __init__(self, status: int, code: str, message: str):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def error_response(status: int, code: str, message: str):
    resp = jsonify(error=code, message=message)
    resp.status_code = status
    return resp


def body_too_large_message(limit: int) -> str:
    """The message of a 413 ``request_entity_too_large`` for a body over ``limit`` bytes (the R
    plumber server words it the same)."""
    return f"the request body is larger than the limit of {int(limit)} bytes (PLANESPOTTER_MAX_CONTENT_LENGTH)"


def register(app: Flask) -> None:
    """Install the handlers: APIError, any werkzeug HTTPException (404, 405, 413, ...), and a
    last-resort 500 that still answers JSON."""

    @app.errorhandler(APIError)
    def _api_error(e: APIError):
        return error_response(e.status, e.code, e.message)

    @app.errorhandler(RequestEntityTooLarge)
    def _too_large(e: RequestEntityTooLarge):
        limit = current_app.config.get("MAX_CONTENT_LENGTH")
        length = request.content_length
        if limit and (length is None or length > limit):  # not werkzeug's form-part limits
            return error_response(413, "request_entity_too_large", body_too_large_message(limit))
        return error_response(413, "request_entity_too_large", e.description or e.name)

    @app.errorhandler(HTTPException)
    def _http_error(e: HTTPException):
        code = (e.name or "error").lower().replace(" ", "_")
        return error_response(e.code or 500, code, e.description or e.name)

    @app.errorhandler(Exception)
    def _unexpected(e: Exception):
        app.logger.exception("unhandled error")
        return error_response(500, "internal_error", f"{type(e).__name__}: {e}")
