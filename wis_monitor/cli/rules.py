"""``check-rules`` and ``test-rules``: rule files on their own."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

import click

from wis_monitor.cli.app import (
    cli,
    config_option,
    expand_globs,
    fail_config,
    load_config_or_exit,
)
from wis_monitor.errors import ConfigError, Problem

if TYPE_CHECKING:
    pass

@cli.command("check-rules")
@config_option
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False))
def check_rules(config: str | None, files: tuple[str, ...]) -> None:
    """Validate rule files on their own: exit 0 if valid, 2 with PATH:LINE errors if not.

    Without -c, group and channel names are not checked and a metric that is not built in is
    assumed to be one a config defines (a note). With -c, they are checked against it.

    Example: wis-monitor check-rules rules/*.yaml
    """
    from wis_monitor.tools.rulecheck import check_rule_files

    files = expand_globs(files)
    cfg = load_config_or_exit(config, secrets=False) if config else None
    found = check_rule_files(files, cfg)
    for note in found.notes:
        click.echo(str(note), err=True)
    if found.problems:
        fail_config(ConfigError(found.problems))
    for path, rules in found.rules.items():
        click.echo(f"{path}: OK ({len(rules)} rule(s))")


@cli.command("test-rules")
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False))
def test_rules(files: tuple[str, ...]) -> None:
    """Run rule unit tests: exit 0 if all pass, 1 if any fails (with a diff), 2 if invalid.

    Example: wis-monitor test-rules rules/tests/*.yaml
    """
    from wis_monitor.tools.ruletest import run_file

    passed = failed = 0
    invalid: list[Problem] = []
    for path in expand_globs(files):
        try:
            outcomes = run_file(path)
        except ConfigError as exc:
            invalid.extend(exc.problems)
            continue
        for outcome in outcomes:
            if outcome.passed:
                passed += 1
            else:
                failed += 1
                click.echo(outcome.diff())
    if invalid:
        fail_config(ConfigError(invalid))
    click.echo(f"{passed} passed, {failed} failed")
    sys.exit(1 if failed else 0)
