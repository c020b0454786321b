"""`--model toy`: the name resolves to the toy Artemis shipped in the package, in one place (common/hub.py), for every
command that takes a model; a folder named `toy` where the command runs still wins."""

import pytest

from artemis_cli.common.hub import TOY_MODEL, check_model_name, resolve_model_folder, toy_model_folder
from artemis_cli.errors import UsageError


def test_toy_names_the_shipped_model_for_every_model_option(tmp_path, monkeypatch):
    from artemis_cli.model.loading import resolve_checkpoint

    folder = toy_model_folder()
    assert (folder / "config.json").is_file() and (folder / "clip" / "config.json").is_file()
    monkeypatch.chdir(tmp_path)
    assert resolve_model_folder(TOY_MODEL, option="--model") == folder
    assert resolve_checkpoint("toy") == folder
    (tmp_path / "toy").mkdir()  # a local folder of that name is taken first: one without a model is refused, saying so
    with pytest.raises(UsageError, match=r"--model toy: \./toy here is a folder without config\.json") as refused:
        resolve_model_folder("toy", option="--model")
    assert str(folder) in refused.value.hint
    with pytest.raises(UsageError, match="taken before the shipped toy model"):
        check_model_name("toy", option="--image-tower")
    (tmp_path / "toy" / "config.json").write_text("{}")  # a model folder of that name is what the user means
    assert resolve_model_folder("toy", option="--model").resolve() == (tmp_path / "toy").resolve()


def test_the_shipped_toy_model_is_small_and_self_contained():
    import json

    folder = toy_model_folder()
    size = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
    assert size <= 25 * 1024 * 1024, size
    config = json.loads((folder / "config.json").read_text())
    assert config["mm_image_tower"] == "clip" and config["mm_spi_model"] is True  # the tower travels with it


def test_a_missing_toy_model_is_one_usage_error(monkeypatch, tmp_path):
    import artemis_cli.common.hub as hub

    monkeypatch.setattr(hub, "TOY_FOLDER", tmp_path / "assets" / "toy")
    with pytest.raises(UsageError, match="--image-tower toy: the toy model is missing"):
        resolve_model_folder("toy", option="--image-tower")
