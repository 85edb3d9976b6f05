"""The sweep commands of ``betasweep`` (study, sweep, worker, report)."""

from __future__ import annotations

import click

COMMANDS: list[click.Command] = []
