"""Venue health and the remedy policy: one classification of ccxt's errors, decided where
they are raised, and what the daemon does with each remedy."""

from __future__ import annotations

import logging

import ccxt
import pytest
from testclock import NOW

from wis_monitor.book import make_book
from wis_monitor.clock import FakeClock
from wis_monitor.errors import Remedy, SourceError
from wis_monitor.health import VenueHealthBoard
from wis_monitor.sources import Observation, error_observation
from wis_monitor.sources.ccxt import classify
from wis_monitor.telemetry import Telemetry


@pytest.mark.parametrize(("exc", "remedy"), [
    (ccxt.BadSymbol("no such market"), Remedy.FIX_CONFIG),
    (ccxt.BadRequest("bad"), Remedy.FIX_CONFIG),
    (ccxt.AuthenticationError("bad key"), Remedy.FIX_CONFIG),
    (ccxt.PermissionDenied("no"), Remedy.FIX_CONFIG),
    (ccxt.AccountSuspended("no"), Remedy.FIX_CONFIG),
    (ccxt.AccountNotEnabled("no"), Remedy.FIX_CONFIG),
    (ccxt.NotSupported("no"), Remedy.FIX_CONFIG),
    (ccxt.RestrictedLocation("geo"), Remedy.FIX_CONFIG),
    (ccxt.RateLimitExceeded("429"), Remedy.BACK_OFF),
    (ccxt.DDoSProtection("429"), Remedy.BACK_OFF),
    (ccxt.ExchangeNotAvailable("503"), Remedy.RETRY),
    (ccxt.OnMaintenance("later"), Remedy.RETRY),
    (ccxt.RequestTimeout("slow"), Remedy.RETRY),
    (ccxt.NetworkError("reset"), Remedy.RETRY),
    (ccxt.BadResponse("junk"), Remedy.RETRY),
    (ccxt.ExchangeError("?"), Remedy.RETRY),
    (ConnectionResetError("reset"), Remedy.RETRY),
])
def test_each_ccxt_error_has_one_remedy_and_keeps_its_name(exc: Exception,
                                                           remedy: Remedy) -> None:
    fault = classify(exc)
    assert fault.remedy is remedy
    assert fault.kind == type(exc).__name__ and str(fault) == str(exc)


def test_a_retry_after_means_back_off_whatever_the_class() -> None:
    fault = classify(ccxt.ExchangeNotAvailable("okx 429"), retry_after_s=3.0)
    assert fault.remedy is Remedy.BACK_OFF and fault.retry_after_s == 3.0


def failed(symbol: str, fault: BaseException, ts: int = NOW) -> Observation:
    return error_observation("okx", symbol, ts, fault)


def good(symbol: str, ts: int = NOW) -> Observation:
    book, flags = make_book([[99.0, 1.0]], [[101.0, 1.0]])
    return Observation("okx", symbol, ts, book, flags, 5.0)


def test_an_error_only_an_operator_can_fix_is_logged_as_an_error_once(
        caplog: pytest.LogCaptureFixture) -> None:
    """Any ccxt class under AuthenticationError or BadRequest (AccountNotEnabled was a
    warning: a second, string-matched list in the daemon did not name it)."""
    board = VenueHealthBoard(FakeClock(NOW), Telemetry())
    caplog.set_level(logging.DEBUG, "wis_monitor")
    for _ in range(3):
        board.record("okx", [failed("BTC/USDT", classify(ccxt.AccountNotEnabled("enable it"))),
                             good("ETH/USDT")])
    said = [(r.levelno, r.getMessage()) for r in caplog.records
            if "BTC/USDT" in r.getMessage()]
    assert said[0] == (logging.ERROR, "venue okx BTC/USDT: AccountNotEnabled: enable it")
    assert [lvl for lvl, _ in said[1:]] == [logging.DEBUG, logging.DEBUG]
    caplog.clear()
    board.record("okx", [good("BTC/USDT"), good("ETH/USDT")])
    assert caplog.messages == ["venue okx BTC/USDT: fetches succeed again"]


def test_a_fault_to_retry_is_a_warning_and_counted_by_its_kind(
        caplog: pytest.LogCaptureFixture) -> None:
    telemetry = Telemetry()
    board = VenueHealthBoard(FakeClock(NOW), telemetry)
    board.record("okx", [failed("BTC/USDT", classify(ccxt.RequestTimeout("slow")))])
    assert [(r.levelno, r.getMessage()) for r in caplog.records] == [
        (logging.WARNING, "venue okx down: RequestTimeout: slow"),
        (logging.WARNING, "venue okx BTC/USDT: RequestTimeout: slow")]
    assert telemetry.errors.labels("okx", "RequestTimeout")._value.get() == 1


def test_a_rate_limit_holds_the_venue_back_for_its_retry_after() -> None:
    clock = FakeClock(NOW)
    board = VenueHealthBoard(clock, Telemetry())
    board.record("okx", [failed("BTC/USDT", classify(ccxt.RateLimitExceeded("429"),
                                                     retry_after_s=3.0))])
    assert board.held_back("okx", clock.now_ms())
    clock.advance(2.9)
    assert board.held_back("okx", clock.now_ms())
    clock.advance(0.1)
    assert not board.held_back("okx", clock.now_ms())
    # A rate limit without Retry-After leaves the pacing to ccxt's own limiter.
    board.record("okx", [failed("BTC/USDT", classify(ccxt.RateLimitExceeded("429")))])
    assert not board.held_back("okx", clock.now_ms())


def test_a_venue_is_up_until_its_last_good_cycle_is_stale_after_old() -> None:
    clock = FakeClock(NOW)
    board = VenueHealthBoard(clock, Telemetry())
    board.record("okx", [good("BTC/USDT")])
    board.record("kraken", [failed("BTC/USDT", SourceError("down"))])
    assert board.up({"okx": 2000, "kraken": 2000}) == {"okx": True, "kraken": False}
    clock.advance(2.0)
    assert board.up({"okx": 2000, "kraken": 2000}) == {"okx": False, "kraken": False}
    board.retain(["okx"])
    assert list(board.venues) == ["okx"]
