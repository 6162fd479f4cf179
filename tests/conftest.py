"""Shared fixtures: where ../shared/data is (its absence skips or fails), a webhook receiver."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from webhook import Receiver

SHARED = Path(os.environ.get("WIS_SHARED_DIR", Path(__file__).resolve().parents[2] / "shared"))


@pytest.fixture
def shared_data() -> Path:
    """``../shared/data``; tests skip without it, and fail when WIS_REQUIRE_SHARED=1 (CI)."""
    data = SHARED / "data"
    if not (data / "books").is_dir():
        if os.environ.get("WIS_REQUIRE_SHARED") == "1":
            pytest.fail(f"{data} not found and WIS_REQUIRE_SHARED=1")
        pytest.skip(f"{data} not found")
    return data


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    """A local webhook endpoint (``json://127.0.0.1:PORT/...``) that accepts every post."""
    r = Receiver()
    yield r
    r.close()
