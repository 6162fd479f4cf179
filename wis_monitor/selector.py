"""The venues' selections (``select:``) resolved against their markets, and kept current.

At start (and at a reload) each selection is resolved from the venue's markets, its symbols
added to the ones the venue lists by name; then again every ``refresh`` and at the latest
when one of its markets expires. Each resolution logs what was added and dropped. The request
budget is checked here too: when more series than the venue's rate limit allows at its
interval are selected, the nearest-the-money (or nearest-expiry) ones that fit are kept and an
error says so. A resolution that fails keeps the previous symbols and is retried.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from wis_monitor.clock import Clock
from wis_monitor.config import Config
from wis_monitor.depths import DEFAULT_DEPTH, request_weight
from wis_monitor.duration import format_duration, ms
from wis_monitor.errors import SourceError
from wis_monitor.selection import capacity, next_expiry
from wis_monitor.settings import Venue

log = logging.getLogger("wis_monitor.select")
RETRY_MS = 30_000  # after a resolution failed


@dataclass
class _State:
    venue: Venue  # as configured: the symbols listed by name, the selection
    symbols: list[str] | None = None  # resolved (None: not yet)
    due_ms: int = 0


class Selector:
    """The selections of one configuration."""

    def __init__(self, config: Config, clock: Clock) -> None:
        self.clock = clock
        self._config = config
        self._state = {v.id: _State(v) for v in config.settings.venues if v.select is not None}
        self._running: set[str] = set()

    def adopt(self, old: Selector) -> None:
        """Keep what ``old`` resolved for the venues whose configuration did not change."""
        for venue_id, state in self._state.items():
            before = old._state.get(venue_id)
            if before is not None and before.venue == state.venue:
                state.symbols, state.due_ms = before.symbols, before.due_ms

    def applied(self, config: Config) -> Config:
        """``config`` with every resolved selection's symbols in place."""
        for venue_id, state in self._state.items():
            if state.symbols is not None:
                config = config.with_symbols(venue_id, state.symbols)
        return config

    async def resolve_all(self) -> Config:
        """Resolve the selections not resolved yet, concurrently; the configuration to run."""
        now = self.clock.now_ms()
        pending = [v for v, s in self._state.items() if s.symbols is None]
        await asyncio.gather(*(self.refresh(v, now) for v in pending))
        return self.applied(self._config)

    def due(self, now_ms: int) -> list[str]:
        """The venues whose selection is to be refreshed now (not already being refreshed)."""
        return [v for v, s in self._state.items()
                if s.due_ms <= now_ms and v not in self._running]

    async def refresh(self, venue_id: str, now_ms: int) -> list[str] | None:
        """Resolve one venue's selection; its new symbols if they changed, else None."""
        from wis_monitor.sources.ccxt import select_markets  # ccxt loads only when selecting

        state = self._state[venue_id]
        venue, select = state.venue, state.venue.select
        assert select is not None
        self._running.add(venue_id)
        try:
            chosen, markets, price, rate = await select_markets(
                venue, select, now_ms, timeout_ms=self._config.timeout_ms(venue))
        except SourceError as exc:
            state.due_ms = now_ms + RETRY_MS
            log.error("venue %s: cannot resolve its selection (%s); %s; retrying in %s",
                      venue_id, exc, "keeping its previous symbols" if state.symbols is not None
                      else "sampling only the symbols it lists", format_duration(RETRY_MS))
            return None
        finally:
            self._running.discard(venue_id)
        symbols = self._within_budget(venue, [*venue.symbols,
                                              *(s for s in chosen if s not in venue.symbols)],
                                      rate)
        expiry = next_expiry(markets, symbols)
        state.due_ms = min(now_ms + ms(select.refresh), expiry if expiry is not None else now_ms
                           + ms(select.refresh))
        before = state.symbols
        state.symbols = symbols
        self._log(venue_id, before, symbols, price)
        return symbols if symbols != before else None

    def _within_budget(self, venue: Venue, symbols: list[str], rate_ms: float) -> list[str]:
        """``symbols``, or as many of them as the venue's rate limit lets one interval fetch
        (those listed by name first, then the selection's in its order), saying so."""
        interval = self._config.interval_ms(venue)
        rate = venue.ccxt.get("rateLimit") or rate_ms
        fits = capacity(interval, float(rate), request_weight(venue.exchange,
                                                              venue.depth or DEFAULT_DEPTH))
        if len(symbols) <= fits:
            return symbols
        log.error("venue %s: its selection has %d series but its rate limit (%g ms per request) "
                  "lets %s sample only %d: sampling the first %d (set select.max, or raise the "
                  "interval)", venue.id, len(symbols), rate, format_duration(interval), fits,
                  max(fits, 0))
        return symbols[:max(fits, 0)]

    @staticmethod
    def _log(venue_id: str, before: list[str] | None, after: list[str],
             price: float | None) -> None:
        at = f" (underlying at {price:g})" if price is not None else ""
        if before is None:
            log.info("venue %s: selection resolved to %d series%s: %s", venue_id, len(after), at,
                     ", ".join(after) or "none")
            return
        added = [s for s in after if s not in before]
        dropped = [s for s in before if s not in after]
        if added or dropped:
            log.info("venue %s: selection refreshed%s: added %s; dropped %s", venue_id, at,
                     ", ".join(added) or "none", ", ".join(dropped) or "none")
        else:
            log.info("venue %s: selection refreshed%s: unchanged (%d series)", venue_id, at,
                     len(after))
