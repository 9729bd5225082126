"""The JSON API's errors and the one place they become responses.

Every error answer has the body ``{"error": code, "detail": text}``; an
invalid rule file adds ``errors``, one entry per problem.

====  ======================  ==============================================
code  error                   when
====  ======================  ==============================================
400   ``invalid_request``     a parameter or the body does not fit
401   ``unauthorized``        no token, an unknown one, or a revoked one
404   ``not_found``           no such path, or no such record of the broker
405   ``method_not_allowed``  the path exists, the method does not
409   ``conflict``            the request clashes with what is stored
413   ``too_large``           the body is over the limit
422   ``invalid_rules``       the rule file fails validation
500   ``internal_error``      a fault of brokerhooks; the log has the traceback
503   ``store_unavailable``   the database cannot be reached; try again
====  ======================  ==============================================

Handlers raise ``ApiError``; errors of the rest of brokerhooks
(``NotFound``, ``Conflict``, ``StoreUnavailable``, ``InvalidRules``) are
translated here too, so a handler may let them pass.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

import structlog
from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from brokerhooks.api.schemas import ErrorBody, RuleProblem
from brokerhooks.errors import Conflict, NotFound, StoreUnavailable
from brokerhooks.rules.errors import InvalidRules

log = structlog.get_logger("brokerhooks.api")

UNAUTHORIZED_DETAIL = (
    "send a valid API token as `Authorization: Bearer <token>`; "
    "make one with `brokerhooks tokens add --broker NAME`"
)


class ApiError(Exception):
    """An answer other than success, with its code and what to do about it."""

    def __init__(
        self,
        status: int,
        error: str,
        detail: str,
        *,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.error = error
        self.detail = detail
        self.headers = headers


def not_found(what: str) -> ApiError:
    return ApiError(404, "not_found", f"no {what}")


def unauthorized() -> ApiError:
    """One answer for a missing, unknown or revoked token: it tells nothing."""
    return ApiError(
        401,
        "unauthorized",
        UNAUTHORIZED_DETAIL,
        headers={"WWW-Authenticate": 'Bearer realm="brokerhooks"'},
    )


_STATUS_ERRORS = {
    400: "invalid_request",
    401: "unauthorized",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "too_large",
}


def _answer(
    request: Request,
    status: int,
    body: ErrorBody,
    headers: Mapping[str, str] | None = None,
) -> Response:
    # The request's log line (see ``api.app``) names the error.
    request.state.api_error = body.error
    content = body.model_dump(exclude={"errors"} if body.errors is None else None)
    return JSONResponse(content, status_code=status, headers=headers)


async def _api_error(request: Request, error: Exception) -> Response:
    assert isinstance(error, ApiError)
    body = ErrorBody(error=error.error, detail=error.detail)
    return _answer(request, error.status, body, error.headers)


async def _invalid_request(request: Request, error: Exception) -> Response:
    assert isinstance(error, RequestValidationError)
    problems = [_problem(item) for item in error.errors()]
    body = ErrorBody(error="invalid_request", detail="; ".join(problems))
    return _answer(request, 400, body)


def _problem(item: Any) -> str:
    """One parameter's problem: where it is and what is wrong (not its value)."""
    location = ".".join(str(part) for part in item.get("loc", ()))
    return f"{location}: {item.get('msg', 'invalid')}"


async def _invalid_rules(request: Request, error: Exception) -> Response:
    assert isinstance(error, InvalidRules)
    body = ErrorBody(
        error="invalid_rules",
        detail=f"{len(error.errors)} problem(s) in the rules; fix each and send again",
        errors=[RuleProblem.of(problem) for problem in error.errors],
    )
    return _answer(request, 422, body)


async def _http_error(request: Request, error: Exception) -> Response:
    assert isinstance(error, HTTPException)
    status = error.status_code
    code = _STATUS_ERRORS.get(status, "invalid_request" if status < 500 else "error")
    detail = {
        404: f"no such path: {request.url.path}; see /api/v1/openapi.json",
        405: f"{request.method} is not allowed here",
    }.get(status, str(error.detail))
    return _answer(request, status, ErrorBody(error=code, detail=detail), error.headers)


async def _not_found(request: Request, error: Exception) -> Response:
    # A handler that forgot to check first; its message may name a command,
    # so it is replaced by a neutral one.
    return _answer(request, 404, ErrorBody(error="not_found", detail="no such record"))


async def _conflict(request: Request, error: Exception) -> Response:
    return _answer(request, 409, ErrorBody(error="conflict", detail=str(error)))


async def _store_unavailable(request: Request, error: Exception) -> Response:
    log.error("api_store_unavailable", error=str(error))
    body = ErrorBody(
        error="store_unavailable",
        detail="the store cannot be reached; try again shortly",
    )
    return _answer(request, 503, body, {"Retry-After": "5"})


Responses = dict[int | str, dict[str, Any]]


def _error(description: str) -> dict[str, Any]:
    return {"model": ErrorBody, "description": description}


# For the OpenAPI description: every route can answer COMMON_ERRORS; a
# route adds those of _ROUTE_ERRORS it can give with ``documented``.
COMMON_ERRORS: Final[Responses] = {
    400: _error("A parameter or the body does not fit (`invalid_request`)."),
    401: _error("No valid API token (`unauthorized`)."),
    "4XX": _error("Any other client error, with the same body."),
    503: _error("The store cannot be reached; try again (`store_unavailable`)."),
}
_ROUTE_ERRORS: Final = {
    404: "No such record of the broker (`not_found`).",
    409: "The request clashes with what is stored (`conflict`).",
    413: "The rule file is too large (`too_large`).",
    422: "The rule file fails validation (`invalid_rules`, with `errors`).",
}


def documented(*statuses: int) -> Responses:
    """The OpenAPI responses of the route-specific errors a route can give."""
    return {status: _error(_ROUTE_ERRORS[status]) for status in statuses}


async def _unexpected(request: Request, error: Exception) -> Response:
    # Starlette logs the exception and its traceback; the caller learns
    # nothing of the code.
    body = ErrorBody(
        error="internal_error",
        detail="something went wrong on our side; the log says what",
    )
    return _answer(request, 500, body)


def install(api: FastAPI) -> None:
    """Make every error of ``api`` answer with an ``ErrorBody``."""
    api.add_exception_handler(ApiError, _api_error)
    api.add_exception_handler(RequestValidationError, _invalid_request)
    api.add_exception_handler(InvalidRules, _invalid_rules)
    api.add_exception_handler(HTTPException, _http_error)
    api.add_exception_handler(NotFound, _not_found)
    api.add_exception_handler(Conflict, _conflict)
    api.add_exception_handler(StoreUnavailable, _store_unavailable)
    api.add_exception_handler(Exception, _unexpected)
