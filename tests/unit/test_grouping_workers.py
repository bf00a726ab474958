"""GroupingWorkers: items that arrive together are handled together; bounded waiting; errors reach the producer."""

from __future__ import annotations

import threading
import time

import pytest

from darts_aux.pipeline import GroupingWorkers


def _recording(groups: list[list[int]], gate: threading.Event | None = None):
    def handle(group: list[int]) -> list[int]:
        if gate is not None:
            gate.wait(5)
        groups.append(list(group))
        return [item * 10 for item in group]
    return handle


def test_items_put_within_the_linger_go_in_one_group() -> None:
    groups: list[list[int]] = []
    with GroupingWorkers(_recording(groups), threads=1, max_group=16, max_waiting=16, linger=1.0) as workers:
        for item in range(5):
            workers.put(item)
        results = workers.close()
    assert groups == [[0, 1, 2, 3, 4]], "closing hands over what waits without lingering further"
    assert results == [0, 10, 20, 30, 40]


def test_a_group_is_taken_once_full_and_never_exceeds_max_group() -> None:
    groups: list[list[int]] = []
    with GroupingWorkers(_recording(groups), threads=1, max_group=3, max_waiting=8, linger=30.0) as workers:
        started = time.monotonic()
        for item in range(3):
            workers.put(item)
        deadline = time.monotonic() + 5
        while not groups and time.monotonic() < deadline:
            time.sleep(0.01)
        assert groups == [[0, 1, 2]] and time.monotonic() - started < 5, "a full group does not wait for the linger"
        for item in range(3, 10):
            workers.put(item)
        workers.close()
    assert all(len(group) <= 3 for group in groups)
    assert [item for group in groups for item in group] == list(range(10))


def test_a_lone_item_waits_no_longer_than_the_linger() -> None:
    groups: list[list[int]] = []
    with GroupingWorkers(_recording(groups), threads=1, max_group=16, max_waiting=16, linger=0.2) as workers:
        workers.put(1)
        deadline = time.monotonic() + 5
        while not groups and time.monotonic() < deadline:
            time.sleep(0.01)
        assert groups == [[1]], "handled after the linger, while the producer is still open"
        workers.close()


def test_put_blocks_while_max_waiting_items_wait() -> None:
    groups: list[list[int]] = []
    gate = threading.Event()
    workers = GroupingWorkers(_recording(groups, gate), threads=1, max_group=1, max_waiting=2)
    workers.put(0)  # taken by the worker, which blocks on the gate
    deadline = time.monotonic() + 5
    while workers._waiting and time.monotonic() < deadline:
        time.sleep(0.01)
    workers.put(1)
    workers.put(2)
    third = threading.Thread(target=workers.put, args=(3,))
    third.start()
    third.join(0.3)
    assert third.is_alive(), "a third waiting item is held back"
    gate.set()
    third.join(5)
    assert not third.is_alive()
    assert workers.close() == [0, 10, 20, 30]


def test_a_handler_error_stops_the_workers_and_reaches_the_producer() -> None:
    def handle(group: list[int]) -> list[int]:
        if 2 in group:
            raise RuntimeError("commit failed")
        return group

    workers = GroupingWorkers(handle, threads=2, max_group=1, max_waiting=1)
    with pytest.raises(RuntimeError, match="commit failed"):
        for item in range(50):
            workers.put(item)
            time.sleep(0.005)
    with pytest.raises(RuntimeError, match="commit failed"):
        workers.close()


def test_when_the_producer_fails_what_was_queued_is_still_handled() -> None:
    groups: list[list[int]] = []
    with pytest.raises(KeyError), GroupingWorkers(_recording(groups), threads=2, max_group=4, max_waiting=8,
                                                  linger=10.0) as workers:
        for item in range(6):
            workers.put(item)
        raise KeyError("download failed")
    assert sorted(item for group in groups for item in group) == list(range(6))
