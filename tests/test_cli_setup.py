"""A new user's first steps with the real CLI in subprocesses: the starter config, files a
config names, commands that need a venue's API, recordings a replay venue reads, notify-test,
check's notes beside its problems, status --json."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from test_check_offline import cli
from webhook import Receiver

# -- the starter config ---------------------------------------------------------------------

EXAMPLE_LINE = re.compile(r"^(\s*)# (\s*(?:- )?[a-z_]+:(?: .*)?)$")


def every_example_uncommented(starter: str) -> str:
    """The starter as a user who uncomments each commented key would make it (an empty ``{}``
    or ``[]`` it replaces goes, as the user would remove it)."""
    lines = [m[1] + m[2] if (m := EXAMPLE_LINE.match(line)) else line
             for line in starter.splitlines()]
    text = "\n".join(lines) + "\n"
    return (text.replace("groups: {}\n", "groups:\n").replace("http: {}\n", "http:\n")
            .replace("  include: []\n", ""))


def test_the_starter_config_checks_clean(tmp_path: Path) -> None:
    assert cli(tmp_path, "new-config", "-o", "c.yaml").returncode == 0
    r = cli(tmp_path, "check", "-c", "c.yaml")
    assert r.returncode == 0
    assert r.stderr == ""
    assert r.stdout.startswith("c.yaml: OK (1 venue(s), 2 series")


def test_the_starter_with_every_example_uncommented_checks_clean(tmp_path: Path) -> None:
    starter = cli(tmp_path, "new-config").stdout
    full = every_example_uncommented(starter)
    for example in ("- id: binance", "- id: okx", "- id: deribit", "  btc: [binance:",
                    "  slack: {url:", "  listen:", "  include: [rules/*.yaml]"):
        assert example in full
    (tmp_path / "c.yaml").write_text(full)
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / "a.yaml").write_text(
        "rules:\n  - name: wide\n    when: spread_bps > 50\n    channels: [console]\n")
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "slack-webhook").write_text("json://localhost:9/hook")
    (creds / "smtp-password").write_text("pw")
    r = cli(tmp_path, "check", "--strict", "-c", "c.yaml",
            env={"CREDENTIALS_DIRECTORY": str(creds)})
    assert r.returncode == 0
    assert r.stderr == ""
    assert r.stdout.startswith("c.yaml: OK (4 venue(s), 7 series, 1 rule(s)")


# -- files a config names -------------------------------------------------------------------

NAMES_FILES = """\
venues:
  - {id: simx, exchange: sim, symbols: [BTC/USDT]}
positions: {positions}
"""


def test_a_positions_file_that_cannot_be_read_is_a_problem_of_the_config_line(
        tmp_path: Path) -> None:
    (tmp_path / "held.yaml").mkdir()
    for name, why in (("positions.csv", "No such file or directory"),
                      ("desk/positions.yaml", "No such file or directory"),
                      ("held.yaml", "is a directory, not a file")):
        (tmp_path / "c.yaml").write_text(NAMES_FILES.replace("{positions}", name))
        r = cli(tmp_path, "check", "-c", "c.yaml")
        assert r.returncode == 2
        assert r.stderr.splitlines() == [f"c.yaml:3: positions: cannot read {name}: {why}",
                                         "1 problem found"]
    (tmp_path / "latin1.csv").write_bytes("venue,symbol,size\nsimx,BTC/USDT,1\n# \xe9\n"
                                          .encode("latin-1"))
    (tmp_path / "c.yaml").write_text(NAMES_FILES.replace("{positions}", "latin1.csv"))
    r = cli(tmp_path, "check", "-c", "c.yaml")
    assert r.stderr.splitlines()[0] == ("latin1.csv: file is not UTF-8 text "
                                        "(included from c.yaml:3)")


# -- commands that need a venue's API ---------------------------------------------------------

UNREACHABLE = """\
venues:
  - id: b
    exchange: binance
    symbols: [BTC/USDT]
    ccxt:
      urls: {api: {public: "http://127.0.0.1:9/binance/api/v3"}}
      options: {fetchMarkets: {types: [spot]}}
"""


def test_markets_that_cannot_be_reached_come_with_a_hint(tmp_path: Path) -> None:
    """Port 9 is closed: what a machine without network sees of a venue's API."""
    (tmp_path / "c.yaml").write_text(UNREACHABLE)
    listed = cli(tmp_path, "list-markets", "b", "-c", "c.yaml")
    assert listed.returncode == 1
    error, hint = listed.stderr.splitlines()
    assert error.startswith("Error: cannot load the markets of binance: ")
    assert hint.startswith("hint: list-markets needs the API of binance, over the network")
    assert "docs/cli.md#trying-it-offline" in hint
    checked = cli(tmp_path, "check", "--online", "-c", "c.yaml")
    assert checked.returncode == 2
    problem, hint, count = checked.stderr.splitlines()
    assert problem.startswith('c.yaml:3: venue "b": cannot load the markets of binance: ')
    assert hint.startswith("hint: check --online needs the API of each ccxt venue, over the "
                           "network")
    assert count == "1 problem found"


# -- check: problems and notes together ----------------------------------------------------

PROBLEM_AND_NOTES = """\
sampling: {interval: 5s, timeout: 6s}
venues:
  - {id: simx, exchange: sim, symbols: [BTC/USDT]}
channels:
  slack: {url: "${credential:slack-webhook}"}
rules:
  include: [r.yaml]
"""


def test_check_shows_notes_beside_problems_in_text_and_json(tmp_path: Path) -> None:
    (tmp_path / "c.yaml").write_text(PROBLEM_AND_NOTES)
    (tmp_path / "r.yaml").write_text("rules:\n  - name: broken\n    when: wis >=\n")
    r = cli(tmp_path, "check", "-c", "c.yaml")
    assert r.returncode == 2
    lines = r.stderr.splitlines()
    problem = next(i for i, line in enumerate(lines) if line.startswith("r.yaml:3: "))
    credential = lines.index('c.yaml:5: note: credential "slack-webhook" ($CREDENTIALS_DIRECTORY'
                             " is not set): not read, so not checked (`run` needs it)")
    timeout = next(i for i, line in enumerate(lines)
                   if line.startswith('c.yaml:1: note: venue "simx": timeout 6s'))
    assert problem < credential and problem < timeout
    assert lines[-1] == "1 problem found"

    js = cli(tmp_path, "check", "--json", "-c", "c.yaml")
    assert js.returncode == 2
    out = json.loads(js.stdout)
    assert [(p["path"], p["line"]) for p in out["problems"]] == [("r.yaml", 3)]
    assert {(n["path"], n["line"]) for n in out["notes"]} == {("c.yaml", 5), ("c.yaml", 1)}
    assert all(not n["message"].startswith("note:") for n in out["notes"])


# -- the recording of a replay venue --------------------------------------------------------

FIXTURES = Path(__file__).parent / "fixtures"
REPLAY = """\
venues:
  - id: r
    exchange: replay
    symbols: [{symbols}]
    books: {books}
"""


def replay_config(tmp: Path, books: Path, symbols: str) -> None:
    (tmp / "c.yaml").write_text(REPLAY.format(books=books, symbols=symbols))


def test_check_finds_a_symbol_the_recording_does_not_hold(tmp_path: Path) -> None:
    books = FIXTURES / "tardis_book_snapshot_5.csv.gz"
    replay_config(tmp_path, books, "BTC/USDT, BTCUSDT")
    r = cli(tmp_path, "check", "-c", "c.yaml")
    assert r.returncode == 2
    assert r.stderr.splitlines() == [
        f'c.yaml:4: venue "r": "BTC/USDT" is not in {books}, the recording holds: BTCUSDT',
        "1 problem found"]
    js = cli(tmp_path, "check", "--json", "-c", "c.yaml")
    assert js.returncode == 2
    assert json.loads(js.stdout)["problems"] == [{
        "path": "c.yaml", "line": 4,
        "message": f'venue "r": "BTC/USDT" is not in {books}, the recording holds: BTCUSDT'}]
    replay_config(tmp_path, books, "BTCUSDT")
    assert cli(tmp_path, "check", "-c", "c.yaml").returncode == 0


def test_check_refuses_a_recording_no_replay_venue_can_serve(tmp_path: Path) -> None:
    (tmp_path / "b.csv").write_text("a,b\n1,2\n")
    replay_config(tmp_path, Path("b.csv"), "BTCUSDT")
    r = cli(tmp_path, "check", "-c", "c.yaml")
    assert r.returncode == 2
    assert r.stderr.splitlines() == [
        'c.yaml:5: venue "r": cannot replay b.csv: b.csv:1: not a Tardis book_snapshot_* or '
        "incremental_book_L2 header (found: a,b)", "1 problem found"]


def test_run_names_the_symbols_a_recording_holds(tmp_path: Path) -> None:
    books = FIXTURES / "tardis_book_snapshot_5.csv.gz"
    replay_config(tmp_path, books, "BTC/USDT")
    r = cli(tmp_path, "run", "--once", "-c", "c.yaml")
    assert f"BadSymbol: BTC/USDT is not in {books}, the recording holds: BTCUSDT" in r.stderr


def test_check_reads_the_symbol_column_of_a_parquet_recording(tmp_path: Path) -> None:
    pytest.importorskip("pyarrow", reason="the analysis extra (pyarrow) is not installed")
    from wis_monitor.sources.recordings_parquet import write_parquet
    from wis_monitor.sources.replay import read_recording

    books = tmp_path / "b.parquet"
    write_parquet(read_recording(FIXTURES / "tardis_book_snapshot_5.jsonl"), books)
    replay_config(tmp_path, books, "BTCUSDT")
    r = cli(tmp_path, "check", "-c", "c.yaml")
    assert r.returncode == 2
    assert r.stderr.startswith(f'c.yaml:4: venue "r": "BTCUSDT" is not in {books}, the '
                               "recording holds: BTC/USDT\n")


def test_check_says_when_it_read_only_the_start_of_a_recording(tmp_path: Path) -> None:
    line = '{{"ts": {ts}, "venue": "v", "symbol": "{sym}", "bids": [[1, 1]], "asks": [[2, 1]]}}\n'
    books = tmp_path / "b.jsonl"
    books.write_text("".join(line.format(ts=1_000 + i, sym="A/B") for i in range(10_000))
                     + line.format(ts=99_000, sym="C/D"))
    replay_config(tmp_path, books, "C/D")
    r = cli(tmp_path, "check", "-c", "c.yaml")
    assert r.returncode == 0
    assert r.stderr == (f'c.yaml:4: note: venue "r": "C/D" is not in the first 10,000 books of '
                        f"{books} (the rest was not read), which hold: A/B\n")


# -- notify-test ----------------------------------------------------------------------------


def test_notify_test_needs_only_the_chosen_channels_credentials(tmp_path: Path) -> None:
    hook = Receiver()
    try:
        (tmp_path / "n.yaml").write_text(
            "venues: [{id: simx, exchange: sim, symbols: [BTC/USDT]}]\n"
            "channels:\n"
            f'  hook: {{url: "json://127.0.0.1:{hook.port}/${{credential:hook-path}}"}}\n'
            '  slack: {url: "${credential:x}"}\n')
        unknown = cli(tmp_path, "notify-test", "-c", "n.yaml", "zz")
        assert unknown.returncode == 2
        assert unknown.stderr == 'Error: unknown channel "zz" (channels: hook, slack)\n'
        creds = tmp_path / "creds"
        creds.mkdir()
        (creds / "hook-path").write_text("desk")
        env = {"CREDENTIALS_DIRECTORY": str(creds)}
        sent = cli(tmp_path, "notify-test", "-c", "n.yaml", "hook", env=env)
        assert sent.returncode == 0, sent.stderr
        assert sent.stdout.startswith("hook: sent")
        assert len(hook.posts) == 1
        other = cli(tmp_path, "notify-test", "-c", "n.yaml", "slack", env=env)
        assert other.returncode == 2
        assert other.stderr.startswith('n.yaml:4: credential "x"')
        assert other.stderr.endswith("\n1 problem found\n")
        (creds / "x").write_text("nosuchscheme://desk-s3cret@host")
        bad = cli(tmp_path, "notify-test", "-c", "n.yaml", "slack", env=env)
        assert bad.returncode == 2
        assert bad.stderr.startswith('n.yaml:4: channel "slack": apprise cannot use this')
        assert "s3cret" not in bad.stderr
    finally:
        hook.close()


# -- status --json --------------------------------------------------------------------------


def test_status_json_says_good_where_the_text_does(tmp_path: Path) -> None:
    (tmp_path / "c.yaml").write_text(
        "storage: {path: wis.db}\n"
        "venues: [{id: simx, exchange: sim, symbols: [BTC/USDT]}]\n")
    assert cli(tmp_path, "run", "--once", "-c", "c.yaml").returncode == 0
    text = cli(tmp_path, "status", "-c", "c.yaml")
    assert text.returncode == 0
    row = next(line for line in text.stdout.splitlines() if line.startswith("simx "))
    assert row.endswith("  good")
    js = cli(tmp_path, "status", "--json", "-c", "c.yaml")
    assert js.returncode == 0
    [series] = json.loads(js.stdout)["series"]
    assert series["last_quality"] == "good"


def test_a_quality_reads_the_same_in_status_text_and_json() -> None:
    from wis_monitor.tools.status import quality_label

    assert quality_label("") == "good"
    assert quality_label("short,thin") == "good (short,thin)"
    assert quality_label("crossed") == "crossed"
