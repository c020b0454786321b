"""The root `artemis` command: registers the command groups and turns `ArtemisError` into exit codes."""

from __future__ import annotations

import contextlib
import os
import sys
from typing import Annotated, Optional

import click
import typer
from typer.core import TyperGroup
from typer._click.exceptions import NoArgsIsHelpError, UsageError as TyperUsageError
from typer.exceptions import TyperException

from artemis_cli import __version__
from artemis_cli.errors import ArtemisError, UsageError


def report_error(exc: ArtemisError) -> None:
    click.echo(f"error: {exc.message}", err=True)
    if exc.hint:
        click.echo(f"hint: {exc.hint}", err=True)


def _usage_error(exc) -> None:
    """One `error:` line naming the option, like every other error (not Typer's boxed panel); exit 2."""
    command = exc.ctx.command_path if getattr(exc, "ctx", None) is not None else "artemis"
    report_error(UsageError(" ".join(exc.format_message().split()), hint=f"see `{command} --help`"))
    raise typer.Exit(2) from None


class ArtemisGroup(TyperGroup):
    """Root group: an `ArtemisError` from any command becomes ``error:``/``hint:`` and its exit code.

    Doing this in the click group (not only in `main`) means Typer's test runner sees the same
    behaviour as the console script. ``ARTEMIS_DEBUG=1`` lets the exception through with its traceback.
    """

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        """The root's own options (`artemis --bogus`) fail here, before `invoke`: the same one `error:` line."""
        try:
            return super().parse_args(ctx, args)
        except TyperUsageError as exc:
            if isinstance(exc, NoArgsIsHelpError) or os.environ.get("ARTEMIS_DEBUG") == "1":
                raise
            _usage_error(exc)

    def invoke(self, ctx: click.Context):
        from artemis_cli.common.quiet import json_stdout

        arguments = [*getattr(ctx, "_protected_args", []), *ctx.args]
        try:
            with json_stdout("--json" in arguments):  # stdout carries the one JSON document only
                return super().invoke(ctx)
        except ArtemisError as exc:
            if os.environ.get("ARTEMIS_DEBUG") == "1":
                raise
            report_error(exc)
            raise typer.Exit(exc.exit_code) from None
        except KeyboardInterrupt:
            if os.environ.get("ARTEMIS_DEBUG") == "1":
                raise
            click.echo(f"\ninterrupted: {resume_line(ctx, arguments)}", err=True)
            raise typer.Exit(130) from None
        except TyperUsageError as exc:
            if isinstance(exc, NoArgsIsHelpError) or os.environ.get("ARTEMIS_DEBUG") == "1":
                raise
            _usage_error(exc)
        except (click.exceptions.ClickException, click.exceptions.Exit, click.exceptions.Abort, typer.Exit,
                typer.Abort, TyperException):  # --help, exits: Typer's own handling
            raise
        except BrokenPipeError:  # `artemis ... | head`: the reader left; nothing to report
            with contextlib.suppress(OSError):
                os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            raise typer.Exit(1) from None
        except Exception as exc:  # anything else is a bug: one line, never a bare traceback
            if os.environ.get("ARTEMIS_DEBUG") == "1":
                raise
            report_error(ArtemisError(f"internal error ({type(exc).__name__}: {_redact(str(exc))})",
                                      hint="this is a bug; rerun with ARTEMIS_DEBUG=1 for the traceback "
                                           "and report it"))
            raise typer.Exit(1) from None


def _tidy_help() -> None:
    """One help style for every command, also those added later: arguments shown as ``OUT``,
    ``DATA_ROOT`` (Typer writes ``{out}``), flags without a ``<bool>`` type column."""
    from typer import core

    argument, option = getattr(core, "TyperArgument", None), getattr(core, "TyperOption", None)
    if argument is not None and hasattr(argument, "_usage_display_name"):
        def usage_name(self) -> str:
            name = (self.metavar or self.name.upper()) + ("..." if self.nargs != 1 else "")
            return name if self.required else f"[{name}]"

        def rich_name(self) -> str:
            return (self.metavar or self.name.upper()) + ("..." if self.metavar is None and self.nargs != 1 else "")

        argument._usage_display_name = usage_name
        if hasattr(argument, "_rich_display_name"):
            argument._rich_display_name = rich_name
    if option is not None and hasattr(option, "display_type_rich"):
        plain = option.display_type_rich

        def display_type_rich(self, ctx):
            return None if self.is_flag else plain(self, ctx)

        option.display_type_rich = display_type_rich


_tidy_help()


def _invoked_path(ctx: click.Context, arguments: list[str]) -> list[str]:
    """The subcommand names on the command line, e.g. ['train', 'stage3']."""
    names, command = [], ctx.command
    args = [a for a in arguments if not a.startswith("-")]
    while hasattr(command, "get_command") and args:  # Typer's own (vendored) click groups
        sub = command.get_command(ctx, args[0])
        if sub is None:
            break
        names.append(args.pop(0))
        command = sub
    return names


def resume_line(ctx: click.Context, arguments: list[str]) -> str:
    """What to do after Ctrl-C: every long command resumes when rerun the same way."""
    names = _invoked_path(ctx, arguments)
    if names[:1] == ["train"]:
        return ("finished checkpoints are kept; rerun the same command with --resume to continue "
                "from the newest complete checkpoint")
    if names[:1] == ["demo"]:
        return "rerun the same command with the same --output to reuse the steps that finished"
    if names[:1] in (["web"], ["serve"]):
        return "the server stopped"
    return "finished work is kept; rerun the same command to continue where it stopped"


def _redact(text: str) -> str:
    """An exception message must never carry an API key into the terminal."""
    for name in ("OPENAI_API_KEY", "ARTEMIS_API_KEY", "ARTEMIS_SERVE_KEY"):
        secret = os.environ.get(name)
        if secret and len(secret) >= 8:
            text = text.replace(secret, "***")
    return text


app = typer.Typer(
    cls=ArtemisGroup,
    name="artemis",
    help="Artemis video-referring model: verify data, extract features, train, infer, judge and score.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    pretty_exceptions_show_locals=False,
    context_settings={"help_option_names": ["-h", "--help"]},
    add_completion=True,  # --install-completion / --show-completion, as Typer and the hf CLI offer
)


def _version_callback(value: bool) -> None:
    if value:
        typer.echo(f"artemis {__version__}")
        raise typer.Exit(0)


@app.callback()
def root(
    version: Annotated[Optional[bool], typer.Option("--version", callback=_version_callback, is_eager=True,
                                                    help="Print the version and exit.")] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Show the libraries' own progress bars, "
                                          "warnings and log lines (hidden by default).")] = False,
) -> None:
    """Artemis video-referring model: verify data, extract features, train, infer, judge and score."""
    from artemis_cli.common.quiet import quiet_libraries

    quiet_libraries(verbose or os.environ.get("ARTEMIS_VERBOSE") == "1")


def _register() -> None:
    from artemis_cli.cli import data, demo, doctor, features, infer, judge, model, ownvideo, score, serve, train, web

    app.add_typer(data.app, name="data")
    app.add_typer(features.app, name="features")
    app.add_typer(model.app, name="model")
    app.add_typer(train.app, name="train")
    app.add_typer(infer.app, name="infer")
    app.command("score")(score.score_cmd)
    app.add_typer(judge.app, name="judge")
    app.command("doctor")(doctor.doctor_cmd)
    app.command("demo")(demo.demo_cmd)
    ownvideo.register(app, data.app)  # track, ask, chat; data build-referring
    app.command("web")(web.web_cmd)
    app.command("serve")(serve.serve_cmd)


_register()


def main() -> None:
    """Console entry point (`artemis` and `python -m artemis_cli`)."""
    app()
