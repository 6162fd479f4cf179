"""The ``wis-monitor`` command line (SPEC §9), a module per group of commands.

Bad input never shows a traceback: configuration problems print as ``PATH:LINE: message`` on
stderr and exit 2; other expected failures become a one-line error and exit 1. Exit codes
(docs/cli.md): 0 ok, 1 runtime failure, 2 bad input or usage (including a missing database or
file), 3 unhealthy (``run --once``).
"""

from __future__ import annotations

import sys

import click

from wis_monitor.cli import analysis, operations, recordings, rules, service
from wis_monitor.cli.app import cli
from wis_monitor.cli.markets import list_exchanges, list_markets, new_config
from wis_monitor.errors import WisMonitorError

__all__ = ["analysis", "cli", "main", "operations", "recordings", "rules", "service"]

for _command in (list_exchanges, list_markets, new_config):
    cli.add_command(_command)


GLOBAL_OPTIONS = ("--log-level", "--log-format")


def hoist_global_options(args: list[str]) -> list[str]:
    """The arguments with the group's options moved before the subcommand, so that
    ``wis-monitor run --log-format json`` works like ``wis-monitor --log-format json run``."""
    front: list[str] = []
    rest: list[str] = []
    i = 0
    while i < len(args):
        a = args[i]
        if a == "--":
            rest.extend(args[i:])
            break
        name = a.split("=", 1)[0]
        if name in GLOBAL_OPTIONS:
            take = 1 if "=" in a or i + 1 == len(args) else 2
            front.extend(args[i:i + take])
            i += take
            continue
        rest.append(a)
        i += 1
    return front + rest


def main() -> None:
    try:
        cli(args=hoist_global_options(sys.argv[1:]), standalone_mode=True)
    except WisMonitorError as exc:
        click.echo(f"error: {exc}", err=True)
