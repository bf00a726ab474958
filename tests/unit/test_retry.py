"""Retry policy: transient errors retried with growing delays, bad input never."""

from __future__ import annotations

import pytest

from darts_aux.errors import SourceDataError, TransientSourceError
from darts_aux.retry import RetryPolicy, is_transient


@pytest.mark.parametrize(
    ("error", "transient"),
    [
        (TimeoutError("read timed out"), True),
        (ConnectionResetError("reset by peer"), True),
        (OSError("HTTP response code: 503"), True),
        (OSError("HTTP response code: 429"), True),
        (OSError("HTTP response code: 404"), False),
        (OSError("transfer closed with 1000 bytes remaining to read"), True),
        (TransientSourceError("x", source="stac"), True),
        (SourceDataError("bad item", source="stac"), False),
        (ValueError("bad input"), False),
    ],
)
def test_classification(error: BaseException, transient: bool) -> None:
    assert is_transient(error) is transient


def test_retries_transient_then_succeeds() -> None:
    calls = []

    def flaky() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise TimeoutError("timed out")
        return "ok"

    assert RetryPolicy(retries=3, base_delay=0.001).call(flaky, what="t") == "ok"
    assert len(calls) == 3


def test_gives_up_after_retries_and_never_retries_bad_input() -> None:
    calls = []

    def down() -> None:
        calls.append(1)
        raise TimeoutError("timed out")

    with pytest.raises(TimeoutError):
        RetryPolicy(retries=2, base_delay=0.001).call(down, what="t")
    assert len(calls) == 3
    calls.clear()

    def bad() -> None:
        calls.append(1)
        raise ValueError("no")

    with pytest.raises(ValueError):
        RetryPolicy(retries=5, base_delay=0.001).call(bad, what="t")
    assert len(calls) == 1


def test_delays_double_and_jitter_stays_in_range() -> None:
    policy = RetryPolicy(retries=4, base_delay=2.0, jitter=0.5)
    assert policy.delays() == [2.0, 4.0, 8.0, 16.0]
    assert all(1.0 <= policy.jittered(2.0) <= 3.0 for _ in range(200))
