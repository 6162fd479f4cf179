"""How outbox rows are claimed and settled, the same on every backend (which supplies
``_settle``, the one UPDATE of a settled row)."""

from __future__ import annotations

from collections.abc import Sequence

from wis_monitor.store.rows import FOLDED, GROUPED


def claim_of(by: str | None, until: int | None, owner: str, now_ms: int
             ) -> tuple[bool, str | None]:
    """Whether ``owner`` may claim a pending row claimed ``by`` someone ``until`` then, and the
    instance whose claim ran out unsettled (it may have sent it before dying), if any."""
    live = by is not None and until is not None and until > now_ms
    if live and by != owner:
        return False, None
    return True, None if live or by is None else by


class Settling:
    """Settling outbox rows: sent in a message of their own or with others, folded into a
    flood summary, or given up."""

    def _settle(self, ids: Sequence[int], status: str, now_ms: int, note: str | None) -> None:
        raise NotImplementedError

    def mark_sent(self, ids: Sequence[int], now_ms: int) -> None:
        """Sent in one message: the first carries it, the others went in it (grouped)."""
        self._settle(ids[:1], "sent", now_ms, None)
        self._settle(ids[1:], "sent", now_ms, GROUPED)

    def fold(self, ids: Sequence[int], now_ms: int) -> None:
        """Sent in one flood summary: the first carries it, the others are folded into it."""
        self._settle(ids[:1], "sent", now_ms, None)
        self._settle(ids[1:], "sent", now_ms, FOLDED)

    def give_up(self, ids: Sequence[int], now_ms: int, reason: str) -> None:
        """Failed for good (past ``max_age``, channel gone)."""
        self._settle(ids, "failed", now_ms, reason)
