"""`artemis doctor`'s SPICE check names exactly what to provide: the CoreNLP 3.6.0 jars, a Java 8-14 or
the Nashorn jars, and where they are looked for."""

from __future__ import annotations

from pathlib import Path

import pytest

from artemis_cli.doctor import check_spice, spice_requirements
from artemis_cli.metrics.java import JavaRuntime

pytest.importorskip("pycocoevalcap")


def java(major: int) -> JavaRuntime:
    return JavaRuntime(path=Path("/usr/bin/java"), major=major, source="PATH")


def corenlp_folder(tmp_path, *names) -> Path:
    folder = tmp_path / "corenlp"
    folder.mkdir()
    for name in names:
        (folder / name).write_bytes(b"")
    return folder


def test_missing_corenlp_and_nashorn_are_both_named(tmp_path, monkeypatch):
    folder = corenlp_folder(tmp_path, "stanford-corenlp-3.6.0.jar")
    monkeypatch.setenv("ARTEMIS_CORENLP_DIR", str(folder))
    needed = spice_requirements(java(17), {"ARTEMIS_CORENLP_DIR": str(folder)})
    assert len(needed) == 2
    assert "stanford-corenlp-3.6.0-models.jar" in needed[0] and "stanford-corenlp-3.6.0.jar " not in needed[0]
    assert f"ARTEMIS_CORENLP_DIR={folder}" in needed[0] and "stanford-corenlp-full-2015-12-09.zip" in needed[0]
    assert "Java 8-14" in needed[1] and "Java 17" in needed[1] and "nashorn-core-15.4.jar" in needed[1]
    check = check_spice(java(17))
    assert check.status == "warn" and "unavailable" in check.detail
    assert "stanford-corenlp-3.6.0-models.jar" in check.fix and "nashorn-core-15.4.jar" in check.fix


def test_java_14_needs_only_the_jars_and_nashorn_jars_satisfy_java_17(tmp_path):
    folder = corenlp_folder(tmp_path, "stanford-corenlp-3.6.0.jar", "stanford-corenlp-3.6.0-models.jar")
    env = {"ARTEMIS_CORENLP_DIR": str(folder)}
    assert spice_requirements(java(11), env) == []
    assert len(spice_requirements(java(17), env)) == 1
    (folder / "nashorn-core-15.4.jar").write_bytes(b"")
    assert spice_requirements(java(17), env) == []


def test_ready_setup_is_ok(tmp_path, monkeypatch):
    folder = corenlp_folder(tmp_path, "stanford-corenlp-3.6.0.jar", "stanford-corenlp-3.6.0-models.jar")
    monkeypatch.setenv("ARTEMIS_CORENLP_DIR", str(folder))
    check = check_spice(java(11))
    assert check.status == "ok" and "Java 11" in check.detail
