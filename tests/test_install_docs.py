"""What a new operator follows: the service starts only after its credentials exist, each
instance keeps its database in its own state directory, `make demo` installs the package
alone, and the package metadata uses the SPDX licence form (no setuptools deprecation)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_credentials_are_created_before_the_service_starts() -> None:
    doc = (ROOT / "docs" / "deployment.md").read_text()
    first_start = doc.index("systemctl enable --now wis-monitor")
    assert doc.index("tee /etc/wis-monitor/credentials/slack-webhook") < first_start
    instances = doc.index("systemctl enable --now wis-monitor@spot")
    assert doc.index("sudo install -d -m 0700 /etc/wis-monitor/credentials/spot") < instances


def test_each_instance_keeps_its_database_in_its_state_directory() -> None:
    unit = (ROOT / "systemd" / "wis-monitor@.service").read_text()
    assert "StateDirectory=wis-monitor/%i" in unit
    doc = (ROOT / "docs" / "deployment.md").read_text()
    assert "storage.path: /var/lib/wis-monitor/spot/wis.db" in doc
    assert "/var/lib/wis-monitor/$i/wis.db" in doc  # what the instance set-up writes


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_make_demo_installs_the_package_without_the_test_toolchain(tmp_path: Path) -> None:
    def plan(target: str) -> str:
        return subprocess.run(["make", "-n", target, f"VENV={tmp_path}/venv"], cwd=ROOT,
                              capture_output=True, text=True, timeout=60, check=True).stdout

    demo = plan("demo")
    assert "pip install -q -e .\n" in demo and "[test]" not in demo
    assert "pip install -q -e '.[test]'" in plan("lint")


def test_licence_is_an_spdx_expression_with_its_file() -> None:
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert meta["project"]["license"] == "MIT"
    assert meta["project"]["license-files"] == ["LICENSE"]
    assert (ROOT / "LICENSE").read_text().startswith("MIT License")
    # The SPDX string form needs setuptools 77 (older ones reject it).
    assert meta["build-system"]["requires"] == ["setuptools>=77"]


def test_the_installed_example_config_checks_clean(tmp_path: Path) -> None:
    """The install block's copies, made into a scratch /etc/wis-monitor with the include set as
    it says, give a config that `check` accepts: every file the example names is installed."""
    doc = (ROOT / "docs" / "deployment.md").read_text()
    block = doc[doc.index("## Install"):doc.index("## Secrets")]
    etc = tmp_path / "etc"
    (etc / "rules").mkdir(parents=True)
    for line in block.splitlines():
        if not line.startswith("sudo cp ") or "/etc/wis-monitor" not in line:
            continue
        src, dest = line.split("#")[0].split()[2:4]
        target = etc / dest.removeprefix("/etc/wis-monitor").lstrip("/")
        for path in sorted(ROOT.glob(src)):
            shutil.copy(path, target / path.name if target.is_dir() or dest.endswith("/")
                        else target)
    config = etc / "config.yaml"
    config.write_text(config.read_text().replace("include: [../../rules/*.yaml]",
                                                 "include: [rules/*.yaml]"))
    done = subprocess.run([sys.executable, "-m", "wis_monitor", "check", "-c", str(config)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
