"""The CelebA commands of ``betasweep`` (data, classifier)."""

from __future__ import annotations

import click

COMMANDS: list[click.Command] = []
