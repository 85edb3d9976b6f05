"""The ``betasweep`` command: one module per command or command group, named after it.

| command | module |
| --- | --- |
| ``train``, ``evaluate``, ``traverse`` | :mod:`.train`, :mod:`.evaluate`, :mod:`.traverse` |
| ``sweep``, ``worker``, ``study create``, ``report``, ``race`` | :mod:`.sweep`, :mod:`.worker`, :mod:`.study`, :mod:`.report`, :mod:`.race` |
| ``data stats``, ``classifier train|evaluate`` | :mod:`.data`, :mod:`.classifier` |
| ``submit``, ``storage-proxy`` | :mod:`.submit`, :mod:`.storage_proxy` |

Shared options and helpers are in :mod:`._common`. No other part of the package holds click code.
Heavy imports (torch, optuna, mlflow) happen inside the commands so ``betasweep --help`` stays fast.

Bad input (a missing file, β <= 0, a latent size < 1, a malformed dataset, a file that is not UTF-8
where text is expected, a folder where a file is expected, an ``OSError`` on a path the user gave) ends
with one line on stderr, ``betasweep: error: ...``, and exit code 2; never a traceback.
"""

from __future__ import annotations


import click

from betasweep.cli import (classifier, data, evaluate, race, report, storage_proxy, study, submit, sweep, train,
                           traverse, worker)
from betasweep.cli._common import EXIT_USAGE
from betasweep.errors import BetasweepError, DivergenceError

__all__ = ["cli", "main"]


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="betasweep")
def cli():
    """Choose β (and latent size, width, batch size) for a β-VAE by a disentanglement metric."""


for _module in (train, evaluate, traverse, sweep, worker, study, report, race, data, classifier, submit, storage_proxy):
    cli.add_command(_module.command)


def main(argv: list[str] | None = None) -> int:
    """Entry point: run the command, turning bad input into one line on stderr and exit code 2."""
    try:
        code = cli.main(args=argv, prog_name="betasweep", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("betasweep: aborted", err=True)
        return 130
    except click.ClickException as error:
        click.echo(f"betasweep: error: {error.format_message()}", err=True)
        return EXIT_USAGE
    except DivergenceError as error:
        click.echo(f"betasweep: error: {error}", err=True)
        return 1
    except BetasweepError as error:
        click.echo(f"betasweep: error: {error}", err=True)
        return EXIT_USAGE
    except OSError as error:  # a file or folder a command was pointed at: unreadable, a folder, a full disk
        click.echo(f"betasweep: error: {os_error_line(error)}", err=True)
        return EXIT_USAGE
    except UnicodeDecodeError as error:  # a text input that is not UTF-8 (the file is named where it is read)
        click.echo(f"betasweep: error: an input is not UTF-8 text ({error.reason} at byte {error.start})", err=True)
        return EXIT_USAGE
    return code if isinstance(code, int) else 0


def os_error_line(error: OSError) -> str:
    """``"PATH: reason"`` of an :class:`OSError` (both paths of a rename), in one line."""
    reason = error.strerror or str(error) or type(error).__name__
    names = [str(n) for n in (error.filename, error.filename2) if n is not None]
    return _one_line(f"{' -> '.join(names)}: {reason}" if names else reason)


def _one_line(text: str) -> str:
    """The first line of ``text`` (a message must be one line), stripped."""
    lines = text.strip().splitlines()
    return lines[0].strip() if lines else text
