"""The root `artemis` command: registers the command groups and turns `ArtemisError` into exit codes."""

from __future__ import annotations

import os
from typing import Annotated, Optional

import click
import typer
from typer.core import TyperGroup

from artemis_cli import __version__
from artemis_cli.errors import ArtemisError


def report_error(exc: ArtemisError) -> None:
    click.echo(f"error: {exc.message}", err=True)
    if exc.hint:
        click.echo(f"hint: {exc.hint}", err=True)


class ArtemisGroup(TyperGroup):
    """Root group: an `ArtemisError` from any command becomes ``error:``/``hint:`` and its exit code.

    Doing this in the click group (not only in `main`) means Typer's test runner sees the same
    behaviour as the console script. ``ARTEMIS_DEBUG=1`` lets the exception through with its traceback.
    """

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except ArtemisError as exc:
            if os.environ.get("ARTEMIS_DEBUG") == "1":
                raise
            report_error(exc)
            raise typer.Exit(exc.exit_code) from None


app = typer.Typer(
    cls=ArtemisGroup,
    name="artemis",
    help="Artemis video-referring model: verify data, extract features, train, infer, judge and score.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    pretty_exceptions_show_locals=False,
    context_settings={"help_option_names": ["-h", "--help"]},
    add_completion=False,
)


def _version_callback(value: bool) -> None:
    if value:
        typer.echo(f"artemis {__version__}")
        raise typer.Exit(0)


@app.callback()
def root(
    version: Annotated[Optional[bool], typer.Option("--version", callback=_version_callback, is_eager=True,
                                                    help="Print the version and exit.")] = None,
) -> None:
    """Artemis video-referring model: verify data, extract features, train, infer, judge and score."""


def _register() -> None:
    from artemis_cli.cli import data, demo, doctor, features, infer, judge, model, score, train

    app.add_typer(data.app, name="data")
    app.add_typer(features.app, name="features")
    app.add_typer(model.app, name="model")
    app.add_typer(train.app, name="train")
    app.add_typer(infer.app, name="infer")
    app.command("score")(score.score_cmd)
    app.add_typer(judge.app, name="judge")
    app.command("doctor")(doctor.doctor_cmd)
    app.command("demo")(demo.demo_cmd)


_register()


def main() -> None:
    """Console entry point (`artemis` and `python -m artemis_cli`)."""
    app()
