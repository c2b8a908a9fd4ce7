"""Errors in OpenAI's shape: every failure leaves the server as {"error": {"message", "type", "param", "code"}}.

    status  type                     when                                             openai client raises
    400     invalid_request_error    a bad value (`param` names it), bad JSON,        BadRequestError
                                     an unknown or unsupported field
    401     authentication_error     --api-key is set and the request lacks it        AuthenticationError
    404     not_found_error          an unknown model (code model_not_found) or path  NotFoundError
    405     invalid_request_error    a known path with the wrong method               APIStatusError
    413     invalid_request_error    a body over the size limit                       APIStatusError
    429     rate_limit_error         the engine's queue is full (Retry-After header)  RateLimitError
    500     server_error             a bug or a failing model, never bad input        InternalServerError
    503     service_unavailable      the model is loading, or the server stops        InternalServerError

A stream that fails after its first event sends `data: {"error": {...}}` and then `data: [DONE]` (the openai
client raises APIError on such an event).
"""

from __future__ import annotations

import contextlib
import json
import logging

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..engine import EngineDeadError, QueueFullError, RequestError

logger = logging.getLogger("zigtensor.serve")

ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
               404: "not_found_error", 405: "invalid_request_error", 413: "invalid_request_error",
               429: "rate_limit_error", 500: "server_error", 503: "service_unavailable"}


class APIError(Exception):
    """An HTTP error with OpenAI's body. `param` names the request field at fault (None when none is)."""

    def __init__(self, status: int, message: str, param: str | None = None, code: str | None = None,
                 headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param
        self.code = code
        self.headers = headers or {}

    def body(self) -> dict:
        return {"error": {"message": self.message, "type": ERROR_TYPES.get(self.status, "invalid_request_error"),
                          "param": self.param, "code": self.code}}

    def response(self) -> JSONResponse:
        return JSONResponse(self.body(), status_code=self.status, headers=self.headers)

    def sse_event(self) -> str:
        """The server-sent event that ends a failed stream (before `data: [DONE]`)."""
        return f"data: {json.dumps(self.body())}\n\n"

    def __repr__(self) -> str:
        return f"APIError({self.status}, {self.message!r}, param={self.param!r})"


def bad_request(message: str, param: str | None = None, code: str | None = None) -> APIError:
    return APIError(400, message, param, code)


def unavailable(message: str) -> APIError:
    return APIError(503, message, code="service_unavailable")


# --------------------------------------------------------------------------------------- translations
def _param(loc) -> str | None:
    """('messages', 0, 'content') -> 'messages[0].content'."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or None


def _short(value, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."


def from_validation(error: ValidationError) -> APIError:
    """A 400 for the first problem pydantic found, naming the field, the value and what was expected."""
    first = error.errors(include_url=False)[0]
    param, kind = _param(first["loc"]), first["type"]
    if kind == "json_invalid":
        return bad_request(f"the request body is not valid JSON: {first.get('ctx', {}).get('error', first['msg'])}",
                           code="invalid_json")
    if kind == "extra_forbidden":
        return bad_request(f"unknown field {param!r}: this server rejects fields it does not know (see "
                           "zigtensor.serve.schemas for the accepted ones)", param, code="unknown_field")
    if kind == "missing":
        return bad_request(f"{param} is required", param)
    message = first["msg"].removeprefix("Value error, ")
    if param is None:  # a check across fields: the message says what is wrong
        return bad_request(f"the request body: {message}")
    return bad_request(f"{param}: {message}, got {_short(first.get('input'))}", param)


@contextlib.contextmanager
def engine_errors(prompt_param: str = "prompt", retry_after: int = 1):
    """Turn the engine's refusals into HTTP errors: RequestError -> 400, QueueFullError -> 429 with Retry-After
    (seconds), EngineDeadError -> 503. `prompt_param` renames the engine's "prompt" (chat's is "messages")."""
    try:
        yield
    except RequestError as e:
        param = prompt_param if e.param == "prompt" else e.param
        raise bad_request(str(e), param) from None
    except QueueFullError as e:
        raise APIError(429, str(e), code="queue_full", headers={"Retry-After": str(retry_after)}) from None
    except EngineDeadError as e:
        raise unavailable(str(e)) from None


# ------------------------------------------------------------------------------------------ handlers
def install_handlers(app: FastAPI) -> None:
    """Every error the app raises, and Starlette's own (unknown path, wrong method), leaves in OpenAI's shape."""

    @app.exception_handler(APIError)
    async def api_error(request: Request, exc: APIError) -> JSONResponse:
        return exc.response()

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        message = exc.detail if isinstance(exc.detail, str) else json.dumps(exc.detail)
        if exc.status_code == 404:
            message = f"no route {request.method} {request.url.path}"
        elif exc.status_code == 405:
            message = f"method {request.method} is not allowed on {request.url.path}"
        return APIError(exc.status_code, message, headers=dict(exc.headers or {})).response()

    @app.exception_handler(ValidationError)
    async def validation_error(request: Request, exc: ValidationError) -> JSONResponse:
        return from_validation(exc).response()

    @app.exception_handler(Exception)
    async def internal_error(request: Request, exc: Exception) -> JSONResponse:
        logger.exception("unhandled error on %s %s", request.method, request.url.path)
        return APIError(500, f"internal server error: {type(exc).__name__}: {exc}", code="internal_error").response()
