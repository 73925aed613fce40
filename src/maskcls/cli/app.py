"""The ``maskcls`` application: its commands registered in the order ``--help`` lists them, and
the glue that turns library errors into ``maskcls: error: ...`` lines and exit codes."""

from __future__ import annotations

import logging
import sys
from typing import Annotated

import typer

from maskcls import __version__
from maskcls.cli import data, evaluate, predict, record, train
from maskcls.cli.render import err, out
from maskcls.errors import Interrupted, UserError

try:  # typer >= 0.20 carries its own copy of click
    from typer._click.exceptions import ClickException
except ImportError:  # pragma: no cover - older typer on plain click
    from click import ClickException

app = typer.Typer(
    name="maskcls",
    help="Face-attribute image classification: mask state, gender and age group from photos.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
COMMANDS = [
    data.synth, data.stats, data.sheet, data.crop,
    train.train, train.cv, train.pseudo, train.distill,
    predict.predict,
    evaluate.ensemble, evaluate.score, evaluate.compare,
    predict.export,
    evaluate.calibrate, evaluate.audit, evaluate.explain,
    record.runs, record.track,
    train.sweep, train.tune,
    record.report,
    predict.serve,
    record.recipes,
]  # fmt: skip
for command in COMMANDS:
    app.command()(command)


def version_callback(value: bool) -> None:
    if value:
        out.print(f"maskcls {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    version: Annotated[
        bool, typer.Option("--version", callback=version_callback, is_eager=True, help="Show the version.")
    ] = False,
) -> None:
    """maskcls: from the raw competition folder to a validated submission."""


class StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is when a line is logged (it may be replaced after setup)."""

    def emit(self, record: logging.LogRecord) -> None:
        self.stream = sys.stderr
        super().emit(record)


class LibraryLogFormat(logging.Formatter):
    """``maskcls: warning: ...`` for warnings, ``maskcls: ...`` for notes such as how weights were mapped."""

    def format(self, record: logging.LogRecord) -> str:
        kind = "warning: " if record.levelno >= logging.WARNING else ""
        return f"maskcls: {kind}{record.getMessage()}"


def show_library_warnings() -> None:
    """The library logs to the ``maskcls`` logger; the CLI prints warnings and notes on stderr."""
    logger = logging.getLogger("maskcls")
    if not logger.handlers:
        handler = StderrHandler()
        handler.setFormatter(LibraryLogFormat())
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)


def main(argv: list[str] | None = None) -> None:
    """Entry point: user mistakes print ``maskcls: error: ...`` lines and exit 2, no traceback."""
    show_library_warnings()
    try:
        code = app(args=argv, standalone_mode=False)  # typer.Exit(n) comes back as n here
    except Interrupted as error:
        err.print(f"maskcls: {error}", highlight=False, markup=False)
        sys.exit(error.exit_code)
    except UserError as error:
        for line in error.lines:
            err.print(f"maskcls: error: {line}", highlight=False, markup=False)
        sys.exit(2)
    except typer.Exit as done:
        sys.exit(done.exit_code)
    except typer.Abort:
        err.print("maskcls: aborted")
        sys.exit(130)
    except ClickException as error:
        error.show()
        sys.exit(error.exit_code)
    if isinstance(code, int) and code:
        sys.exit(code)
