import json

from typer.testing import CliRunner

from artemis_cli.cli.app import app
from artemis_cli.errors import ArtemisError

runner = CliRunner()


def _checks(result):
    return {c["name"]: c for c in json.loads(result.stdout)["checks"]}


def test_doctor_json_lists_every_check_and_never_prints_the_key(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-secret-value-123")
    result = runner.invoke(app, ["doctor", "--json"])
    assert result.exit_code == 0, result.output
    checks = _checks(result)
    assert set(checks) == {"python", "torch / CUDA", "torchvision RoIAlign", "video decoding", "Java (scoring)",
                           "SPICE (CoreNLP jars)", "DeepSpeed", "open_clip", "web page", "openai (judge)", "free disk"}
    assert checks["torchvision RoIAlign"]["status"] == "ok"
    assert checks["openai (judge)"] == {"name": "openai (judge)", "status": "ok",
                                        "detail": checks["openai (judge)"]["detail"], "fix": ""}
    assert "OPENAI_API_KEY set" in checks["openai (judge)"]["detail"]
    assert "sk-secret" not in result.output
    assert all(c["status"] in {"ok", "warn", "fail"} for c in checks.values())


def test_doctor_reports_missing_java_with_the_fix_and_exits_1(monkeypatch):
    import artemis_cli.metrics.java as java

    def no_java():
        raise ArtemisError("no working Java runtime (no `java` on PATH)", hint="pip install 'artemis[score]'")

    monkeypatch.setattr(java, "resolve_java", no_java)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    result = runner.invoke(app, ["doctor", "--json"])
    assert result.exit_code == 1
    checks = _checks(result)
    assert checks["Java (scoring)"]["status"] == "fail"
    assert checks["Java (scoring)"]["fix"] == "pip install 'artemis[score]'"
    assert checks["SPICE (CoreNLP jars)"]["status"] == "warn"
    assert checks["openai (judge)"]["status"] == "warn" and "not set" in checks["openai (judge)"]["detail"]


def test_doctor_table_output():
    result = runner.invoke(app, ["doctor"])
    assert "artemis doctor" in result.output and "video decoding" in result.output


def test_doctor_fixes_are_paragraphs_below_the_table_at_80_columns(monkeypatch):
    """The SPICE fix names several jars: as a table cell at 80 columns it folded into ~40 lines. Now the
    table points at numbered fixes printed below it, wrapped at the terminal's width."""
    from artemis_cli import doctor as doctor_module

    fix = ("provide Stanford CoreNLP 3.6.0: stanford-corenlp-3.6.0.jar and stanford-corenlp-3.6.0-models.jar; "
           "unzip stanford-corenlp-full-2015-12-09.zip and pass that folder with --corenlp-dir, and a Java 8-14 "
           "runtime first on PATH, or nashorn-core-15.4.jar and the asm 7.3.1 jars in the CoreNLP folder")
    checks = [doctor_module.Check("python", "ok", "3.11", ""), doctor_module.Check("SPICE (CoreNLP jars)", "warn",
                                                                                 "unavailable", fix)]
    monkeypatch.setattr(doctor_module, "doctor", lambda path: checks)
    result = runner.invoke(app, ["doctor"], terminal_width=80)
    lines = result.stdout.splitlines()
    assert max(len(line) for line in lines) <= 80
    spice_row = next(line for line in lines if line.startswith("│ SPICE"))
    assert spice_row.rstrip().endswith("│ [1] │")
    fix_lines = lines[lines.index(next(line for line in lines if line.startswith("[1] SPICE"))):]
    assert len(fix_lines) <= 6 and " ".join(fix_lines).replace("  ", " ") == f"[1] SPICE (CoreNLP jars): {fix}"
