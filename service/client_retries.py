"""When the client tries a call again: a busy service (503/429, after its Retry-After) and a failed connection
(after a short backoff), a bounded number of times and never past the call's time budget."""

import time
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

from service.client_errors import Overloaded, RescaleError, TransportFailure

FIRST_BACKOFF_S = 0.2


class RetryBudget:
    """The attempts of one call: `timeout` seconds in all, waits included, and at most `retries` retries."""

    def __init__(self, *, timeout: float, retries: int, max_retry_wait: float) -> None:
        self.deadline = time.monotonic() + timeout
        self.retries_left = retries
        self.max_retry_wait = max_retry_wait
        self.backoff = FIRST_BACKOFF_S

    def remaining(self) -> float:
        return max(0.0, self.deadline - time.monotonic())

    def wait_before_retry(self, error: RescaleError, retry_after: str | None = None) -> float | None:
        """Seconds to wait before trying again after `error`, or None to give up and raise it."""
        if self.retries_left <= 0 or not isinstance(error, Overloaded | TransportFailure):
            return None
        if isinstance(error, Overloaded) and (asked := parse_retry_after(retry_after)) is not None:
            wait = asked
        else:
            wait, self.backoff = self.backoff, self.backoff * 2
        wait = min(wait, self.max_retry_wait)
        if wait >= self.remaining():  # the next attempt could not finish inside the budget: fail now
            return None
        self.retries_left -= 1
        return wait


def parse_retry_after(value: str | None) -> float | None:
    """Retry-After as seconds: a number of seconds, or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())
