import subprocess
import sys

from typer.testing import CliRunner

from artemis_cli import __version__
from artemis_cli.cli.app import app
from artemis_cli.errors import ArtemisError, UsageError

runner = CliRunner()


def test_version_and_help_list_command_groups():
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and result.output.strip() == f"artemis {__version__}"
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    assert "data" in result.output


def test_artemis_error_becomes_error_hint_and_exit_code(monkeypatch):
    import artemis_cli.data.sample as sample

    def boom(*args, **kwargs):
        raise UsageError("bad things", hint="try --other")

    monkeypatch.setattr(sample, "make_sample", boom)
    result = runner.invoke(app, ["data", "make-sample", "/tmp/x"])
    assert result.exit_code == 2
    assert "error: bad things" in result.output and "hint: try --other" in result.output
    assert "Traceback" not in result.output


def test_artemis_debug_shows_the_exception(monkeypatch):
    import artemis_cli.data.sample as sample

    monkeypatch.setattr(sample, "make_sample", lambda *a, **k: (_ for _ in ()).throw(ArtemisError("x")))
    monkeypatch.setenv("ARTEMIS_DEBUG", "1")
    result = runner.invoke(app, ["data", "make-sample", "/tmp/x"])
    assert isinstance(result.exception, ArtemisError)


def test_bad_usage_exits_2():
    result = runner.invoke(app, ["data", "verify-layout"])
    assert result.exit_code == 2


def test_console_script_starts_without_importing_torch():
    code = ("import sys; from artemis_cli.cli.app import app; "
            "sys.argv=['artemis','--help']\n"
            "try:\n    app()\nexcept SystemExit:\n    pass\n"
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "False"


def test_python_dash_m_runs_the_cli():
    out = subprocess.run([sys.executable, "-m", "artemis_cli", "--version"], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.strip() == f"artemis {__version__}"


def console_script() -> str:
    """The installed `artemis` script beside this interpreter (the README's set-up installs it)."""
    from pathlib import Path

    return str(Path(sys.executable).parent / "artemis")


def test_root_level_usage_errors_are_one_error_line():
    """`artemis --bogus` fails while the root parses its own options, before any command runs: the same
    one `error:` line and exit 2 as a command's bad option, not Typer's boxed panel."""
    done = subprocess.run([console_script(), "--bogus"], capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, timeout=60)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.splitlines() == ["error: No such option: --bogus (Possible options: --verbose)",
                                        "hint: see `artemis --help`"]
    assert "╭" not in done.stderr


def test_shell_completion_is_offered():
    result = runner.invoke(app, ["--help"])
    assert "--install-completion" in result.output and "--show-completion" in result.output
    env = {**__import__("os").environ, "_ARTEMIS_COMPLETE": "complete_bash", "COMP_WORDS": "artemis data verify-layout --st",
           "COMP_CWORD": "3"}
    done = subprocess.run([console_script()], capture_output=True, text=True, env=env,
                          stdin=subprocess.DEVNULL, timeout=60)
    assert done.stdout.split() == ["--stage"], done.stderr
