"""The pure decisions about streamed books: okx's checksum, staleness, drift, the fallback to
polling and the logging of resync bursts, on explicit times."""

from __future__ import annotations

import asyncio

import pytest
from testclock import NOW, Clock

from wis_monitor.settings import Venue
from wis_monitor.sources.ccxt import CcxtVenue
from wis_monitor.sources.stream import StreamVenue
from wis_monitor.streamguard import (
    Burst,
    Fallback,
    drift_bps,
    number_text,
    okx_checksum,
    okx_checksum_text,
    staleness,
)

# okx's documented examples (API v5, "Checksum" of the order book channel).
BIDS = [["3366.1", "7", "0", "3"], ["3366", "6", "3", "4"]]
ASKS = [["3366.8", "9", "10", "3"], ["3368", "8", "3", "4"]]


def test_the_checksum_text_alternates_bids_and_asks_as_okx_documents() -> None:
    assert okx_checksum_text(BIDS, ASKS) == "3366.1:7:3366.8:9:3366:6:3368:8"


def test_a_side_that_runs_out_is_left_out_of_the_text() -> None:
    asks = [*ASKS, ["3372", "8", "3", "4"]]
    assert okx_checksum_text(BIDS[:1], asks) == "3366.1:7:3366.8:9:3368:8:3372:8"


def test_the_checksum_is_the_signed_crc32_of_the_text() -> None:
    # the same value as ccxt's own crc32(..., signed=True) of the documented text
    assert okx_checksum(BIDS, ASKS) == -1881014294


def test_only_the_top_25_levels_count() -> None:
    bids = [[str(100 - i), "1"] for i in range(30)]
    asks = [[str(101 + i), "1"] for i in range(30)]
    assert okx_checksum(bids, asks) == okx_checksum(bids[:25], asks[:25])
    assert okx_checksum(bids, asks) != okx_checksum(bids[:24], asks[:25])


@pytest.mark.parametrize(("value", "text"), [(3366.1, "3366.1"), (7.0, "7"), (1e-05, "0.00001"),
                                             (123456789.123, "123456789.123"), (0.0, "0")])
def test_numbers_are_written_as_okx_writes_them(value: float, text: str) -> None:
    assert number_text(value) == text


def test_a_book_is_stale_when_silent_or_behind_the_clock() -> None:
    assert staleness(10_000, 9_000, 9_000, 5_000) is None
    assert staleness(10_000, 5_000, 9_990, 5_000) == "silent"
    assert staleness(10_000, 9_990, 4_999, 5_000) == "lagging"
    assert staleness(10_000, None, None, 5_000) is None


def test_drift_is_zero_for_equal_books_and_counts_the_notional_that_differs() -> None:
    bids = [[100.0, 1.0], [99.0, 2.0], [98.0, 3.0]]
    asks = [[101.0, 1.0], [102.0, 2.0], [103.0, 3.0]]
    total = 100 + 198 + 294 + 101 + 204 + 309
    assert drift_bps((bids, asks), (bids, asks), 10) == 0.0
    wrong = [[100.0, 1.0], [99.0, 2.0], [98.0, 4.0]]  # one amount off by 1
    assert drift_bps((wrong, asks), (bids, asks), 10) == pytest.approx(98 / total * 1e4)
    phantom = [[100.0, 1.0], [99.5, 5.0], [99.0, 2.0]]  # a level the venue does not have
    drift = drift_bps((phantom, asks), (bids, asks), 3)
    assert drift == pytest.approx((99.5 * 5 + 294) / total * 1e4)  # and 98 is missing
    frozen = ([[90.0, 1.0]], [[91.0, 1.0]])  # far from the venue's book
    assert drift_bps(frozen, (bids, asks), 10) == 1e4
    assert drift_bps((wrong, asks), (bids, asks), 2) == 0.0  # beyond the levels compared
    assert drift_bps((bids, asks), ([], asks), 10) is None


def test_fallback_after_repeated_trouble_then_back_after_a_quiet_period() -> None:
    f = Fallback(after=3, window_ms=60_000, quiet_ms=300_000)
    assert not f.trouble(0) and not f.trouble(10_000)
    assert not f.trouble(65_000)  # the first one has left the window
    assert f.trouble(68_000) and f.polling
    assert not f.trouble(69_000)  # already polling: not counted
    assert not f.resume(367_999) and f.polling
    assert f.resume(368_000) and not f.polling
    assert not f.trouble(376_000)  # a fresh window after streaming again


def test_a_burst_of_resyncs_is_logged_once() -> None:
    b = Burst(gap_ms=60_000)
    assert b.note(0)
    assert not b.note(1_000) and not b.note(30_000) and b.count == 3
    assert b.note(91_000) and b.count == 1


def _venue(clock: Clock) -> StreamVenue:
    """A streamed venue whose books the test sets by hand (nothing is connected)."""
    v = Venue.model_validate({"id": "v", "exchange": "binance", "mode": "stream",
                              "symbols": ["BTC/USDT", "ETH/USDT"],
                              "stream": {"stale_after": "5s", "fallback_after": 3}})
    return StreamVenue(v, rest=CcxtVenue(v, timeout_ms=1000, clock=clock), clock=clock,
                       timeout_ms=1000)


def _book(ts: int, nonce: int = 7) -> dict[str, object]:
    return {"symbol": "BTC/USDT", "bids": [[100.0, 1.0]], "asks": [[101.0, 1.0]],
            "timestamp": ts, "nonce": nonce}


def test_the_watchdog_flags_a_silent_or_lagging_book_stale_and_discards_it() -> None:
    clock = Clock(NOW)
    source = _venue(clock)
    source._took(_book(NOW))
    obs = asyncio.run(source.fetch("BTC/USDT", NOW))
    assert obs.book is not None and not obs.flags and obs.book_age_ms == 0.0
    clock.advance(4.9)
    assert asyncio.run(source.fetch("BTC/USDT", clock.ms)).flags == frozenset()
    clock.advance(0.1)  # 5 s without an update: silent
    obs = asyncio.run(source.fetch("BTC/USDT", clock.ms))
    assert obs.flags == {"stale"} and obs.book_age_ms == 5000.0
    assert source.stats.resyncs == {("BTC/USDT", "silent"): 1}
    assert source.books["BTC/USDT"].book is None  # resubscribed: no book until a fresh one
    obs = asyncio.run(source.fetch("BTC/USDT", clock.ms))
    assert obs.book is None and obs.flags == {"stale"} and obs.error is None
    source._took(_book(clock.ms - 5000, nonce=8))  # updates arrive, but 5 s old: lagging
    obs = asyncio.run(source.fetch("BTC/USDT", clock.ms))
    assert obs.flags == {"stale"} and obs.book_age_ms == 0.0
    assert source.stats.resyncs[("BTC/USDT", "lagging")] == 0  # resubscribed < 5 s ago
    assert source.books["BTC/USDT"].book is None


def test_no_book_for_stale_after_is_an_error_and_resubscribed_after_a_grace() -> None:
    clock = Clock(NOW)
    source = _venue(clock)
    obs = asyncio.run(source.fetch("ETH/USDT", NOW))
    assert obs.book is None and obs.flags == {"stale"} and obs.error is None
    clock.advance(5.0)
    obs = asyncio.run(source.fetch("ETH/USDT", clock.ms))
    assert obs.error is not None and obs.error.startswith("StreamStale: no streamed book for 5.0s")
    assert not source.stats.resyncs  # the first snapshot may take a while
    clock.advance(25.0)
    obs = asyncio.run(source.fetch("ETH/USDT", clock.ms))
    assert obs.error is not None and source.stats.resyncs == {("ETH/USDT", "no snapshot"): 1}
    source._took({**_book(clock.ms), "symbol": "ETH/USDT"})
    source._resynced(source.connections[0], "ETH/USDT", "silent", restart=False)
    clock.advance(5.0)  # lost after it had one: resubscribed after stale_after
    assert asyncio.run(source.fetch("ETH/USDT", clock.ms)).error is not None
    assert source.stats.resyncs[("ETH/USDT", "no snapshot")] == 2


def test_a_book_waiting_for_its_snapshot_is_not_sampled() -> None:
    clock = Clock(NOW)
    source = _venue(clock)
    source._took(_book(NOW))
    source._took({**_book(NOW), "nonce": None})  # ccxt returns a book before its snapshot
    obs = asyncio.run(source.fetch("BTC/USDT", NOW))
    assert obs.book is None and obs.flags == {"stale"}
