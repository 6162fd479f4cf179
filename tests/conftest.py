"""Shared fixtures: where ../shared/data is, and whether its absence skips or fails."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

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
