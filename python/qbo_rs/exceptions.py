"""The exceptions qbo_rs raises. Every one derives from :class:`QboError`.

The Rust core maps each of its error kinds to exactly one class here (see
``src/errors.rs``; the mapping is an exhaustive ``match``), so ``except`` clauses can
tell "fix your input" from "fix your credentials" from "retry later". Messages say what
to do next and never contain a token or secret.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Optional

if TYPE_CHECKING:  # pragma: no cover
    from qbo_rs._qbo_rs import BackfillReport, Estimate

__all__ = [
    "QboError",
    "ConfigError",
    "RequestBudgetError",
    "AuthError",
    "TokenStoreError",
    "ApiError",
    "RateLimitError",
    "ServerError",
    "QueryValidationError",
    "DecodeError",
    "SinkError",
    "IntegrityError",
    "BackfillError",
]


class QboError(Exception):
    """Base class of every qbo_rs error."""


class ConfigError(QboError, ValueError):
    """Bad input, caught before any request or write: dates, page_size, entity, secrets, DSN."""


class RequestBudgetError(ConfigError):
    """A backfill's estimate needs more requests than ``max_requests`` allows; it was refused
    before its first page (only the plan's COUNT requests were spent). ``estimate`` holds the
    :class:`~qbo_rs.Estimate`."""

    def __init__(self, message: str, estimate: "Estimate") -> None:
        super().__init__(message)
        self.estimate = estimate


class AuthError(QboError):
    """OAuth failed: invalid_grant, invalid_client, a 401 that survived a refresh, or 403."""

    def __init__(self, message: str, intuit_tid: Optional[str] = None) -> None:
        super().__init__(message)
        self.intuit_tid = intuit_tid


class TokenStoreError(AuthError):
    """The token store file could not be read or written."""


class ApiError(QboError):
    """QBO answered with an error that retries did not cure."""

    def __init__(
        self,
        message: str,
        status: Optional[int] = None,
        intuit_tid: Optional[str] = None,
        attempts: int = 1,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.intuit_tid = intuit_tid
        self.attempts = attempts


class RateLimitError(ApiError):
    """QBO kept answering 429 after every retry (max_retries)."""


class ServerError(ApiError):
    """5xx, timeouts, connection resets or malformed bodies outlived every retry."""


class QueryValidationError(ApiError):
    """QBO rejected the query (400 ValidationFault). Retrying cannot help."""

    def __init__(
        self,
        message: str,
        code: str = "",
        detail: Optional[str] = None,
        intuit_tid: Optional[str] = None,
    ) -> None:
        super().__init__(message, status=400, intuit_tid=intuit_tid)
        self.code = code
        self.detail = detail


class DecodeError(QboError):
    """A 2xx body that is not the shape QBO documents."""


class SinkError(QboError):
    """Writing the RAW layer failed. Nothing partial is left visible."""


class IntegrityError(QboError):
    """Rows fetched, counted and written disagree for a window."""


class BackfillError(QboError):
    """Some windows failed. ``report`` has them all; re-run the failed labels."""

    def __init__(self, message: str, report: "BackfillReport") -> None:
        super().__init__(message)
        self.report = report
