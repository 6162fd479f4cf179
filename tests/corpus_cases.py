"""The corpus of bad configs and rule files (tests/corpus/bad/), and how a case is applied.

Each case is one file: ``c-*.yaml`` replaces the main config, ``r-*.yaml`` the rule file that a
valid main config includes. ``EXPECTED`` names, per case, where the problem must be reported
(``PATH`` or ``PATH:LINE``, relative to the case directory) and a fragment of its message.

Run as a script (``python tests/corpus_cases.py WORKDIR``), it checks every case with the real
``wis-monitor check``, in this one process, under a 1 GiB address-space limit, and prints one
JSON object per case: exit status, output, seconds taken.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import resource
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

CORPUS = Path(__file__).resolve().parent / "corpus" / "bad"
LIMIT_BYTES = 1 << 30

BASE_CONFIG = """\
storage: {path: "${WIS_DB}"}
sampling: {interval: 200ms, timeout: 1s}
metrics:
  zscore: {window: 1m, min_samples: 5}
venues:
  - {id: simex, exchange: sim, symbols: [BTC/USDT], sim: {seed: 3}}
groups:
  btc: ["simex:BTC/USDT"]
channels:
  console: {url: "console://"}
rules:
  include: [rules.yaml]
"""

GOOD_RULES = """\
rules:
  - name: pressure
    when: wis_z >= 3
    for: 10s
    channels: [console]
"""

#: Values behind ${...} and ${credential:...}: none may appear in any output.
SECRETS = {
    "SLACK_URL": "https://hooks.slack.com/services/T0SECRET/B0SECRET/xyzSECRETxyz",
    "SLACK_TOKEN": "sekrit-token-value-123",
}
CREDENTIAL = b"sekrit-credential-\xff\xfe-contents"


@dataclass(frozen=True)
class Case:
    file: str
    where: str  # PATH or PATH:LINE, relative to the case directory unless absolute
    fragment: str

    @property
    def content(self) -> bytes:
        return (CORPUS / self.file).read_bytes()

    def location(self, workdir: Path) -> str:
        return self.where if self.where.startswith("/") else f"{workdir}/{self.where}"


def cases() -> list[Case]:
    out = []
    for line in (CORPUS / "EXPECTED").read_text().splitlines():
        if line and not line.startswith("#"):
            file, where, fragment = line.split("\t")
            out.append(Case(file, where, fragment))
    return out


def env(workdir: Path) -> dict[str, str]:
    return {**SECRETS, "CREDENTIALS_DIRECTORY": str(workdir / "creds"),
            "WIS_DB": str(workdir / "wis.db")}


def prepare(workdir: Path) -> Path:
    """A valid config and rule file in ``workdir``, with the special files cases point at."""
    (workdir / "adir").mkdir()
    os.mkfifo(workdir / "fifo.yaml")
    (workdir / "big.yaml").write_text("rules: []\n" + "#" * (2 << 20) + "\n")
    (workdir / "creds").mkdir()
    (workdir / "creds" / "binary").write_bytes(CREDENTIAL)
    restore(workdir)
    return workdir / "config.yaml"


def apply(case: Case, workdir: Path) -> None:
    """Write the case into the config (``c-``) or the rule file (``r-``)."""
    if case.file.startswith("c-"):
        (workdir / "config.yaml").write_bytes(case.content)
        (workdir / "rules.yaml").write_text(GOOD_RULES)
    else:
        (workdir / "config.yaml").write_text(BASE_CONFIG)
        (workdir / "rules.yaml").write_bytes(case.content)


def restore(workdir: Path) -> None:
    (workdir / "config.yaml").write_text(BASE_CONFIG)
    (workdir / "rules.yaml").write_text(GOOD_RULES)


def check_in_process(config: Path) -> tuple[int, str, str]:
    """``wis-monitor check --strict -c CONFIG`` (the checks of `run`: secrets included) through
    the real click command, in this process."""
    from wis_monitor.cli import cli

    out, err = io.StringIO(), io.StringIO()
    code = 0
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            cli.main(["check", "--strict", "-c", str(config)], prog_name="wis-monitor",
                     standalone_mode=False)
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        except BaseException:  # reported to the test as a traceback
            traceback.print_exc(file=err)
            code = 1
    return code, out.getvalue(), err.getvalue()


def main(workdir: Path) -> None:
    resource.setrlimit(resource.RLIMIT_AS, (LIMIT_BYTES, LIMIT_BYTES))
    os.environ.update(env(workdir))
    config = prepare(workdir)
    for case in cases():
        apply(case, workdir)
        start = time.monotonic()
        code, out, err = check_in_process(config)
        seconds = time.monotonic() - start
        print(json.dumps({"file": case.file, "code": code, "stdout": out, "stderr": err,
                          "seconds": seconds}), flush=True)


if __name__ == "__main__":
    main(Path(sys.argv[1]))
