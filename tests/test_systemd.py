"""The shipped systemd units: hardened (exposure <= 2.0), clean under `systemd-analyze verify`."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
UNITS = ["wis-monitor.service", "wis-monitor@.service"]
ANALYZE = shutil.which("systemd-analyze")

pytestmark = pytest.mark.skipif(
    ANALYZE is None and os.environ.get("WIS_REQUIRE_SHARED") != "1",
    reason="systemd-analyze is not installed (.ci/run installs it)",
)


@pytest.mark.parametrize("unit", UNITS)
def test_exposure_at_most_2(unit: str) -> None:
    out = subprocess.run([ANALYZE or "systemd-analyze", "security", "--offline=true",
                          str(ROOT / "systemd" / unit)], capture_output=True, text=True,
                         timeout=60)
    m = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", out.stdout)
    assert m, out.stdout + out.stderr
    assert float(m.group(1)) <= 2.0, out.stdout


@pytest.mark.parametrize("unit", UNITS)
def test_verify_is_clean(unit: str, tmp_path: Path) -> None:
    # verify needs ExecStart to exist: point it at this checkout's interpreter.
    exe = Path(sys.executable)
    text = (ROOT / "systemd" / unit).read_text()
    text = text.replace("/opt/wis-monitor/bin/wis-monitor", f"{exe} -m wis_monitor")
    name = unit.replace("@.", "@shard1.")
    (tmp_path / name).write_text(text)
    out = subprocess.run([ANALYZE or "systemd-analyze", "verify", str(tmp_path / name)],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout + out.stderr == ""


def test_units_keep_the_contract() -> None:
    text = (ROOT / "systemd" / "wis-monitor.service").read_text()
    for line in ("Type=notify", "WatchdogSec=", "Restart=on-failure", "RestartPreventExitStatus=2",
                 "DynamicUser=yes", "StateDirectory=wis-monitor", "LoadCredential=",
                 "ExecReload=/bin/kill -HUP $MAINPID"):
        assert line in text, line
