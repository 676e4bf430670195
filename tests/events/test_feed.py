"""Feed cursors and the signal that wakes event streams."""

from __future__ import annotations

import asyncio

import pytest

from digibridge.events.feed import BadCursor, FeedSignal, decode_cursor, encode_cursor

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.mark.parametrize("position", [0, 1, 9, 10, 12345, 2**63 - 1])
def test_a_cursor_names_its_position_and_only_one_spelling_is_accepted(position: int) -> None:
    cursor = encode_cursor(position)
    assert decode_cursor(cursor) == position
    assert encode_cursor(position) == cursor  # stable
    with pytest.raises(BadCursor):
        decode_cursor(cursor + "A")


def test_cursors_are_url_safe() -> None:
    for position in (0, 62, 63, 4095, 10**18):
        assert set(encode_cursor(position)) <= set(
            "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
        )


def test_a_negative_position_has_no_cursor() -> None:
    with pytest.raises(ValueError, match="negative"):
        encode_cursor(-1)


async def test_notify_sets_the_tickets_taken_before_it_and_no_later_ones() -> None:
    signal = FeedSignal(max_streams=2)
    before = signal.ticket()
    signal.notify()
    after = signal.ticket()

    assert before.is_set()
    assert not after.is_set()
    await signal.wait(before, timeout=5)  # returns at once: the wake-up was not lost
    await signal.wait(after, timeout=0.01)  # returns at its timeout
    assert not after.is_set()


async def test_a_waiting_stream_is_woken_by_notify() -> None:
    signal = FeedSignal(max_streams=1)
    ticket = signal.ticket()
    waiter = asyncio.create_task(signal.wait(ticket, timeout=30))
    signal.notify()
    await asyncio.wait_for(waiter, timeout=5)


def test_streams_are_capped_and_close_refuses_new_ones_until_open() -> None:
    signal = FeedSignal(max_streams=2)
    assert signal.acquire()
    assert signal.acquire()
    assert not signal.acquire()
    signal.release()
    assert signal.streams == 1
    assert signal.acquire()

    ticket = signal.ticket()
    signal.close()
    assert ticket.is_set()  # waiting streams wake up to see that they must end
    signal.release()
    assert not signal.acquire()
    signal.open()
    assert signal.acquire()
