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
