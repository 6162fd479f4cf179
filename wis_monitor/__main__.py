"""``python -m wis_monitor`` is the ``wis-monitor`` command."""

from wis_monitor.cli import main

main()
