"""Retry policy: transient errors retried with growing delays, bad input never."""

from __future__ import annotations

import pytest

from darts_aux.errors import SourceDataError, SourceUnavailableError, TransientSourceError
from darts_aux.retry import RetryPolicy, gave_up_on, is_transient, retries_used, should_retry


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


def test_an_outer_policy_does_not_repeat_what_an_inner_one_gave_up_on() -> None:
    """Policies stacked (a chunk's download around a request) send a request that stays down retries + 1 times."""
    calls = []

    def down() -> None:
        calls.append(1)
        raise ConnectionResetError("reset by peer")

    inner, outer = RetryPolicy(retries=2, base_delay=0.001), RetryPolicy(retries=3, base_delay=0.001)
    with pytest.raises(ConnectionResetError) as raised:
        outer.call(lambda: inner.call(down, what="request"), what="download")
    assert len(calls) == 3
    assert retries_used(raised.value) and not should_retry(raised.value) and is_transient(raised.value)


def test_a_wrapped_failure_that_was_retried_stays_unretried() -> None:
    """The mark is found down the chain, and SourceUnavailableError (raised after the retries) is never retried."""
    def timeout() -> None:
        raise TimeoutError("timed out")

    try:
        try:
            RetryPolicy(retries=0).call(timeout, what="t")
        except TimeoutError as error:
            raise RuntimeError("search failed") from error
    except RuntimeError as wrapped:
        assert is_transient(wrapped) and not should_retry(wrapped)
    unavailable = SourceUnavailableError("kept failing", source="stac")
    unavailable.__cause__ = TimeoutError("timed out")
    assert is_transient(unavailable) and not should_retry(unavailable)
    assert should_retry(TimeoutError("timed out")), "a failure nothing retried yet is retried"


@pytest.mark.parametrize(
    ("error", "retried"),
    [
        (TimeoutError("timed out"), True),
        (gave_up_on(TimeoutError("timed out")), False),
        (SourceUnavailableError("down after retries", source="stac"), False),
        (SourceDataError("bad item", source="stac"), False),
    ],
)
def test_prefect_retries_only_what_no_policy_retried(error: BaseException, retried: bool) -> None:
    from prefect.states import Failed

    from darts_aux.flows.policy import retry_on_transient

    state = Failed(data=error)
    assert retry_on_transient(None, None, state) is retried  # type: ignore[arg-type]


def test_give_up_seconds_bounds_a_source_that_stays_down() -> None:
    policy = RetryPolicy(retries=3, base_delay=1.0, jitter=0.5)
    assert policy.give_up_seconds(30.0) == 4 * 30.0 + (1 + 2 + 4) * 1.5
