"""redis-py's exceptions. It wraps socket errors in its own ConnectionError, keeping the
original as the cause: that cause often says more than the wrapper."""

from __future__ import annotations

import redis.exceptions

from resilience_exporter.classify import (
    MessageRules,
    by_message,
    classify_builtin,
    first_line,
    unexplained,
)
from resilience_exporter.reasons import Failure

REDIS_MESSAGES: MessageRules = (
    ("wrongpass", "auth", True),
    ("noauth", "auth", True),
    ("invalid username-password", "auth", True),
    ("invalid password", "auth", True),
    ("auth <password> called without any password", "auth", True),
    ("noperm", "auth", True),
    ("connection refused", "refused", False),
    ("no such file or directory", "refused", False),
    ("name or service not known", "dns", True),
    ("temporary failure in name resolution", "dns", False),
    ("nodename nor servname", "dns", True),
    ("timeout", "timeout", False),
    ("timed out", "timeout", False),
    ("ssl", "tls", True),
    ("certificate", "tls", True),
    ("max number of clients reached", "too_many_connections", False),
    ("loading", "other", False),
)


def classify_redis(exc: BaseException) -> Failure:
    if isinstance(exc, redis.exceptions.TimeoutError):
        return Failure("timeout", "no answer within the timeout")
    if isinstance(exc, redis.exceptions.AuthenticationError | redis.exceptions.NoPermissionError):
        return Failure("auth", first_line(exc), persistent=True)
    if isinstance(exc, redis.exceptions.RedisError):
        found = by_message(exc, REDIS_MESSAGES, first_line)
        if found is not None:
            return found
        cause = exc.__cause__ or exc.__context__
        if cause is not None and not isinstance(cause, redis.exceptions.RedisError):
            found = classify_builtin(cause)
            if found is not None and found.reason != "other":
                return found
        if isinstance(exc, redis.exceptions.InvalidResponse | redis.exceptions.DataError):
            return Failure("protocol", first_line(exc))
        return Failure("other", first_line(exc))
    return classify_builtin(exc) or unexplained(exc)
