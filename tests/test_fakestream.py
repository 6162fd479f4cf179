"""What ccxt.pro itself does with streamed order books, driven against the fake streaming venue
in binance's and okx's real formats: correct books in normal operation, and what each fault
(gap, bad checksum, silent socket, 1006, 429 on the snapshot, slow delivery) does or fails to
do. These pin ccxt's behaviour; the monitor's own safeguards are built on them."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import ccxt.pro as ccxtpro
import pytest
from ccxt.base.errors import (
    ChecksumError,
    DDoSProtection,
    InvalidNonce,
    NetworkError,
    RequestTimeout,
)
from fakestream import (
    PHANTOM_SIZE,
    ChecksumMismatch,
    FakeStreamVenue,
    GapError,
    okx_checksum_of,
    rebuild_binance,
    rebuild_okx,
)
from fakevenue import Levels

BLOCKED = 0.8  # how long a watch must stay unanswered to count as blocked
PATIENCE = 20.0  # the most a condition may take under load before the test fails

pytestmark = pytest.mark.timeout(60)


@asynccontextmanager
async def streaming(history: int | None = None, tick_s: float = 0.02
                    ) -> AsyncIterator[FakeStreamVenue]:
    venue = FakeStreamVenue(tick_s=tick_s, history=history)
    await venue.start()
    try:
        yield venue
    finally:
        await venue.stop()


@asynccontextmanager
async def pro(venue: FakeStreamVenue, exchange_id: str, **extra: Any) -> AsyncIterator[Any]:
    """A real ccxt.pro exchange pointed at the venue; ``extra`` is deep-merged into its config."""
    config = venue.ccxt_config(exchange_id)
    for key, value in extra.items():
        config[key] = {**config.get(key, {}), **value}
    exchange = getattr(ccxtpro, exchange_id)(config)
    try:
        yield exchange
    finally:
        await exchange.close()


def levels(book: Any) -> tuple[Levels, Levels]:
    return ([[float(p), float(q)] for p, q in book["bids"]],
            [[float(p), float(q)] for p, q in book["asks"]])


async def error_of(watch: Callable[[], Awaitable[Any]]) -> Exception:
    """Call ``watch`` until it raises; the exception."""
    deadline = time.monotonic() + PATIENCE
    while time.monotonic() < deadline:
        try:
            await asyncio.wait_for(watch(), PATIENCE)
        except Exception as exc:
            return exc
    raise AssertionError("no error raised")


async def until(condition: Callable[[], bool], what: str,
                watch: Callable[[], Awaitable[Any]] | None = None) -> None:
    """Poll ``condition``, calling ``watch`` (else sleeping a little) in between."""
    deadline = time.monotonic() + PATIENCE
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        if watch is None:
            await asyncio.sleep(0.01)
        else:
            await asyncio.wait_for(watch(), PATIENCE)


async def assert_correct(venue: FakeStreamVenue, exchange: Any, exchange_id: str, symbol: str,
                         updates: int) -> Any:
    """``updates`` successive books equal the venue's book at their update id; the last one."""
    book: Any = None
    for _ in range(updates):
        book = await asyncio.wait_for(exchange.watch_order_book(symbol), PATIENCE)
        assert levels(book) == venue.reference(exchange_id, symbol, book["nonce"])
    return book


# -- normal operation ---------------------------------------------------------------------------


@pytest.mark.parametrize(("exchange_id", "symbol"), [
    ("binance", "BTC/USDT"), ("binanceusdm", "BTC/USDT:USDT"),
    ("binancecoinm", "BTC/USD:BTC"), ("okx", "BTC/USDT")])
def test_streamed_book_equals_the_venues_book_at_every_update(exchange_id: str,
                                                              symbol: str) -> None:
    async def main() -> None:
        async with streaming() as venue, pro(venue, exchange_id) as ex:
            nonces = []
            for _ in range(15):
                book = await asyncio.wait_for(ex.watch_order_book(symbol), PATIENCE)
                assert levels(book) == venue.reference(exchange_id, symbol, book["nonce"])
                nonces.append(book["nonce"])
            assert nonces == sorted(set(nonces))
            assert len(book["bids"]) > 20 and len(book["asks"]) > 20
    asyncio.run(main())


def test_rebuild_from_the_sent_messages_matches_ccxt() -> None:
    """The plain-Python rebuild of what the venue sent agrees with ccxt.pro's book, including
    binance's snapshot sync and okx's checksums."""
    async def main() -> None:
        async with streaming() as venue:
            async with pro(venue, "binance") as ex:
                book = await assert_correct(venue, ex, "binance", "BTC/USDT", 10)
                mine = rebuild_binance(venue.snapshots("binance", "BTC/USDT")[-1],
                                       [e for e in venue.sent("binance", "BTC/USDT")
                                        if e["u"] <= book["nonce"]])
                assert mine.nonce == book["nonce"] and mine.levels() == levels(book)
            async with pro(venue, "okx") as ex:
                book = await assert_correct(venue, ex, "okx", "BTC/USDT", 10)
                sent = venue.sent("okx", "BTC/USDT")
                mine = rebuild_okx([m for m in sent if m["data"][0]["seqId"] <= book["nonce"]])
                assert mine.levels() == levels(book)
                checksum = next(m["data"][0]["checksum"] for m in sent
                                if m["data"][0]["seqId"] == book["nonce"])
                assert okx_checksum_of(*levels(book)) == checksum
    asyncio.run(main())


def books_of(exchange: Any, symbols: list[str]) -> dict[str, Any]:
    return {s: exchange.orderbooks[s] for s in symbols if s in exchange.orderbooks}


def assert_all_correct(venue: FakeStreamVenue, exchange: Any, exchange_id: str,
                       symbols: list[str]) -> dict[str, Any]:
    """Every symbol's book held by ``exchange`` equals the venue's book at its update id."""
    books = books_of(exchange, symbols)
    for symbol, book in books.items():
        if book["nonce"] is not None and book["timestamp"] is not None:
            assert levels(book) == venue.reference(exchange_id, symbol, book["nonce"])
    return books


@pytest.mark.parametrize("exchange_id", ["binance", "okx"])
def test_books_for_several_symbols_on_one_connection_are_correct(exchange_id: str) -> None:
    """Each call returns the first book to change, so with symbols that move together the
    others are seldom returned: their books are in ``exchange.orderbooks``, correct too."""
    async def main() -> None:
        symbols = ["BTC/USDT", "ETH/BTC"]
        async with streaming() as venue, pro(venue, exchange_id) as ex:
            await asyncio.wait_for(ex.watch_order_book_for_symbols(symbols), PATIENCE)
            start = {s: b["nonce"] for s, b in books_of(ex, symbols).items()}
            for _ in range(30):
                book = await asyncio.wait_for(ex.watch_order_book_for_symbols(symbols), PATIENCE)
                assert levels(book) == venue.reference(exchange_id, book["symbol"], book["nonce"])
                assert_all_correct(venue, ex, exchange_id, symbols)
            books = books_of(ex, symbols)
            assert sorted(books) == symbols
            assert all(books[s]["nonce"] > (start.get(s) or 0) for s in symbols)
            assert venue.connections(exchange_id) == 1
    asyncio.run(main())


# -- sequence gaps --------------------------------------------------------------------------------


@pytest.mark.parametrize(("exchange_id", "symbol", "error"), [
    ("binance", "BTC/USDT", ChecksumError), ("binanceusdm", "BTC/USDT:USDT", ChecksumError),
    ("okx", "BTC/USDT", InvalidNonce)])
def test_a_sequence_gap_raises_and_the_next_call_resyncs(exchange_id: str, symbol: str,
                                                         error: type[Exception]) -> None:
    async def main() -> None:
        async with streaming() as venue, pro(venue, exchange_id) as ex:
            await assert_correct(venue, ex, exchange_id, symbol, 2)
            snapshots = len(venue.snapshots(exchange_id, symbol))
            venue.set_stream_fault(exchange_id, symbol, "gap")
            exc = await error_of(lambda: ex.watch_order_book(symbol))
            assert type(exc) is error
            await assert_correct(venue, ex, exchange_id, symbol, 5)
            assert len(venue.snapshots(exchange_id, symbol)) == snapshots + 1
    asyncio.run(main())


def test_binance_with_its_checksum_option_off_freezes_the_book_after_a_gap() -> None:
    """``options.watchOrderBook.checksum = False``: no error, and no update ever again."""
    async def main() -> None:
        async with streaming() as venue, pro(venue, "binance",
                                             options={"watchOrderBook": {"checksum": False}}) as ex:
            book = await assert_correct(venue, ex, "binance", "BTC/USDT", 2)
            venue.set_stream_fault("binance", "BTC/USDT", "gap")
            stuck = venue.nonce("binance", "BTC/USDT")
            with pytest.raises(TimeoutError):
                while True:  # the update before the gap may still arrive; then nothing
                    book = await asyncio.wait_for(ex.watch_order_book("BTC/USDT"), BLOCKED)
            assert book["nonce"] <= stuck < venue.nonce("binance", "BTC/USDT") - 10
    asyncio.run(main())


def test_a_gap_on_one_of_several_symbols_resyncs_them_all() -> None:
    """okx, one connection: a gap on one symbol resubscribes every symbol (a fresh snapshot for
    each); its InvalidNonce reaches the caller only if a call is waiting when the gap is seen,
    else the resync is silent; book objects kept from before stop updating."""
    async def main() -> None:
        symbols = ["BTC/USDT", "ETH/BTC"]
        errors: list[Exception] = []

        async def watch() -> None:
            try:
                await ex.watch_order_book_for_symbols(symbols)
            except InvalidNonce as exc:
                errors.append(exc)

        async with streaming() as venue, pro(venue, "okx") as ex:
            await until(lambda: len(books_of(ex, symbols)) == 2, "both books", watch)
            kept = books_of(ex, symbols)
            before = {s: len(venue.snapshots("okx", s)) for s in symbols}
            venue.set_stream_fault("okx", "BTC/USDT", "gap")
            await until(lambda: all(len(venue.snapshots("okx", s)) > before[s] for s in symbols)
                        and len(books_of(ex, symbols)) == 2, "both books to resync", watch)
            frozen = {s: b["nonce"] for s, b in kept.items()}
            await until(lambda: all(b["nonce"] > max(frozen.values()) + 10
                                    for b in books_of(ex, symbols).values()), "updates", watch)
            assert_all_correct(venue, ex, "okx", symbols)
            assert all(len(venue.snapshots("okx", s)) == before[s] + 1 for s in symbols)
            assert {s: b["nonce"] for s, b in kept.items()} == frozen
            assert all(kept[s] is not ex.orderbooks[s] for s in symbols)
            assert all(type(e) is InvalidNonce for e in errors)
    asyncio.run(main())


# -- checksums ----------------------------------------------------------------------------------


def test_okx_checksums_are_not_verified() -> None:
    """A wrong checksum on a right update passes; a wrong update with the right checksum leaves
    a wrong book, with no error, until a resubscription."""
    async def main() -> None:
        async with streaming() as venue, pro(venue, "okx") as ex:
            await assert_correct(venue, ex, "okx", "BTC/USDT", 2)
            venue.set_stream_fault("okx", "BTC/USDT", "bad_checksum")
            await until(lambda: "bad_checksum" not in venue.stream_faults("okx", "BTC/USDT"),
                        "the corrupted checksum to be sent")
            await assert_correct(venue, ex, "okx", "BTC/USDT", 5)
            with pytest.raises(ChecksumMismatch):
                rebuild_okx(venue.sent("okx", "BTC/USDT"))

            venue.set_stream_fault("okx", "BTC/USDT", "bad_levels")
            await until(lambda: "bad_levels" not in venue.stream_faults("okx", "BTC/USDT"),
                        "the corrupted update to be sent")
            for _ in range(30):
                book = await asyncio.wait_for(ex.watch_order_book("BTC/USDT"), PATIENCE)
            assert levels(book) != venue.reference("okx", "BTC/USDT", book["nonce"])
            assert [q for _, q in book["bids"] if q == float(PHANTOM_SIZE)]
            assert okx_checksum_of(*levels(book)) != next(
                m["data"][0]["checksum"] for m in venue.sent("okx", "BTC/USDT")
                if m["data"][0]["seqId"] == book["nonce"])
    asyncio.run(main())


# -- connections ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("exchange_id", "symbol"), [("binance", "BTC/USDT"),
                                                     ("okx", "BTC/USDT")])
def test_a_silent_open_socket_just_blocks(exchange_id: str, symbol: str) -> None:
    async def main() -> None:
        async with streaming() as venue, pro(venue, exchange_id) as ex:
            await assert_correct(venue, ex, exchange_id, symbol, 2)
            venue.set_stream_fault(exchange_id, symbol, "silent")
            with pytest.raises(TimeoutError):
                while True:  # updates already in flight may still arrive; then nothing
                    await asyncio.wait_for(ex.watch_order_book(symbol), BLOCKED)
            assert venue.connections(exchange_id) == 1
    asyncio.run(main())


@pytest.mark.parametrize(("exchange_id", "default_ms"), [("okx", 18_000),
                                                         ("binance", 180_000)])
def test_a_silent_socket_times_out_only_after_the_keepalive(exchange_id: str,
                                                            default_ms: int) -> None:
    """ccxt.pro pings every ``keepAlive`` ms (okx a text ping, binance a protocol ping) and
    gives up after two unanswered, as RequestTimeout: by default the silence is noticed after
    36 to 54 s on okx, 6 to 9 minutes on binance. Here keepAlive is cut to 1 s (shorter, a busy
    machine misses a pong of a healthy socket)."""
    async def main() -> None:
        async with streaming() as venue, pro(venue, exchange_id,
                                             streaming={"keepAlive": 1000}) as ex:
            await assert_correct(venue, ex, exchange_id, "BTC/USDT", 2)
            assert getattr(ccxtpro, exchange_id)().streaming["keepAlive"] == default_ms
            assert ex.streaming["keepAlive"] == 1000
            venue.set_stream_fault(exchange_id, "BTC/USDT", "silent")
            exc = await error_of(lambda: ex.watch_order_book("BTC/USDT"))
            assert type(exc) is RequestTimeout and "keepalive" in str(exc)
            venue.set_stream_fault(exchange_id, "BTC/USDT", None)
            await assert_correct(venue, ex, exchange_id, "BTC/USDT", 3)
    asyncio.run(main())


@pytest.mark.parametrize(("exchange_id", "symbol"), [("binance", "BTC/USDT"),
                                                     ("okx", "BTC/USDT")])
def test_a_dropped_connection_raises_network_error_1006_then_reconnects(exchange_id: str,
                                                                        symbol: str) -> None:
    async def main() -> None:
        async with streaming() as venue, pro(venue, exchange_id) as ex:
            await assert_correct(venue, ex, exchange_id, symbol, 2)
            venue.set_stream_fault(exchange_id, symbol, "drop")
            exc = await error_of(lambda: ex.watch_order_book(symbol))
            assert type(exc) is NetworkError and "closing code 1006" in str(exc)
            await assert_correct(venue, ex, exchange_id, symbol, 5)
            await until(lambda: venue.connections(exchange_id) == 1, "one connection")
    asyncio.run(main())


def test_429s_on_the_snapshot_are_retried_three_times_then_raise_ddos_protection() -> None:
    """binance's resync snapshot: three tries regardless of Retry-After, then DDoSProtection
    (not RateLimitExceeded); the call after that resyncs once the venue answers."""
    async def main() -> None:
        async with streaming() as venue, pro(venue, "binance") as ex:
            await assert_correct(venue, ex, "binance", "BTC/USDT", 2)
            venue.set_fault("binance", "http429", count=50, retry_after=60, symbol="BTC/USDT")
            asked = len(venue.requests("binance"))
            venue.set_stream_fault("binance", "BTC/USDT", "gap")
            assert type(await error_of(lambda: ex.watch_order_book("BTC/USDT"))) is ChecksumError
            exc = await error_of(lambda: ex.watch_order_book("BTC/USDT"))
            assert type(exc) is DDoSProtection and "429" in str(exc)
            tries = [r for r in venue.requests("binance")[asked:] if r.path == "/api/v3/depth"]
            assert len(tries) == 3
            assert tries[-1].ts_ms - tries[0].ts_ms < 30_000  # Retry-After: 60 s, not honoured
            venue.set_fault("binance", None)
            await assert_correct(venue, ex, "binance", "BTC/USDT", 3)
    asyncio.run(main())


def test_a_slow_connection_gives_past_books_and_no_error() -> None:
    """Every book is a real past state; only its timestamp against the clock shows the lag."""
    async def main() -> None:
        async with streaming() as venue, pro(venue, "okx") as ex:
            await assert_correct(venue, ex, "okx", "BTC/USDT", 2)
            venue.set_stream_fault("okx", "BTC/USDT", "delay", 0.5)
            book = await assert_correct(venue, ex, "okx", "BTC/USDT", 40)
            assert ex.milliseconds() - book["timestamp"] >= 400
            assert venue.nonce("okx", "BTC/USDT") - book["nonce"] >= 10
    asyncio.run(main())


def test_the_reference_rebuild_detects_gaps() -> None:
    async def main() -> None:
        async with streaming() as venue, pro(venue, "binance") as ex:
            await assert_correct(venue, ex, "binance", "BTC/USDT", 2)
            venue.set_stream_fault("binance", "BTC/USDT", "gap")
            await until(lambda: not venue.stream_faults("binance", "BTC/USDT"), "the gap")
            sent = len(venue.sent("binance", "BTC/USDT"))
            await until(lambda: len(venue.sent("binance", "BTC/USDT")) > sent, "the next update")
            with pytest.raises(GapError):
                rebuild_binance(venue.snapshots("binance", "BTC/USDT")[-1],
                                venue.sent("binance", "BTC/USDT"))
    asyncio.run(main())


@pytest.mark.parametrize(("exchange_id", "symbol"), [("binanceusdm", "BTC/USDT:USDT"),
                                                     ("okx", "BTC/USDT")])
def test_the_venue_keeps_a_bounded_history(exchange_id: str, symbol: str) -> None:
    """For long runs: the oldest events fold into the reference's starting book."""
    async def main() -> None:
        async with streaming(history=25, tick_s=0.01) as venue, pro(venue, exchange_id) as ex:
            await assert_correct(venue, ex, exchange_id, symbol, 80)
            assert len(venue.streams[exchange_id, symbol].events) <= 50
            assert len(venue.sent(exchange_id, symbol)) <= 25
    asyncio.run(main())
