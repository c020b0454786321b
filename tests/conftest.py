"""Shared fixtures: the sample dataset and tiny random models, built once per session, offline."""

from __future__ import annotations

import os

import pytest

# Tests never touch the network: any hub lookup fails fast instead of hanging.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("DS_ACCELERATOR", "cpu")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

SAMPLE_FEATURE_DIM = 64  # the tiny CLIP's width, so sample features fit the tiny models


@pytest.hookimpl(trylast=True)  # after the tmp_path plugin made its factory
def pytest_configure(config):
    """Everything a run writes lives under pytest's base temp folder, which is removed when every test
    passed (`tmp_path_retention_policy = "failed"`): the temp files of the code under test and of the
    servers it starts (TMPDIR), torch.compile's cache, gradio's uploads and the artemis cache (never the
    user's own ~/.cache/artemis)."""
    import tempfile

    if not hasattr(config, "_tmp_path_factory"):  # pytest without its tmp_path plugin
        return
    scratch = config._tmp_path_factory.getbasetemp() / "scratch"
    for name, folder in (("TMPDIR", "tmp"), ("TORCHINDUCTOR_CACHE_DIR", "torchinductor"),
                         ("GRADIO_TEMP_DIR", "gradio"), ("ARTEMIS_CACHE", "artemis-cache"),
                         ("MPLCONFIGDIR", "matplotlib")):
        path = scratch / folder
        path.mkdir(parents=True, exist_ok=True)
        os.environ[name] = str(path)
    tempfile.tempdir = os.environ["TMPDIR"]


@pytest.fixture(scope="session")
def sample(tmp_path_factory):
    """`artemis data make-sample` output (feature width 64): a `SampleSummary`."""
    from artemis_cli.data.sample import make_sample

    return make_sample(tmp_path_factory.mktemp("sample"), seed=0, feature_dim=SAMPLE_FEATURE_DIM)


@pytest.fixture(scope="session")
def tiny_clip_dir(tmp_path_factory):
    from artemis_cli.model.tiny import save_tiny_clip

    return save_tiny_clip(tmp_path_factory.mktemp("tiny_clip"))


@pytest.fixture(scope="session")
def tiny_tokenizer_dir(tmp_path_factory):
    from artemis_cli.model.tiny import save_tiny_tokenizer

    return save_tiny_tokenizer(tmp_path_factory.mktemp("tiny_tokenizer"))


@pytest.fixture(scope="session")
def tiny_artemis(tiny_clip_dir, tiny_tokenizer_dir):
    """A random tiny Artemis (model, tokenizer, image_processor): Llama hidden 64, the tiny CLIP tower,
    RoI module with ONE fuse round (speed; the published model has 5) and k-means K=4 over 8 tracked
    RoIs. Shared by the session: do not change its weights (train a copy)."""
    from artemis_cli.model.tiny import build_tiny_artemis

    return build_tiny_artemis(tiny_tokenizer_dir, tiny_clip_dir, seed=0, roi_num_fuse=1)


@pytest.fixture(scope="session")
def tiny_artemis_dir(tiny_artemis, tmp_path_factory):
    """`tiny_artemis` saved as a merged checkpoint folder (config.json, model.safetensors, tokenizer)."""
    from artemis_cli.model.loading import save_model

    model, tokenizer, _ = tiny_artemis
    return save_model(model, tokenizer, tmp_path_factory.mktemp("tiny_artemis") / "artemis")


@pytest.fixture(scope="session")
def train_start(tmp_path_factory):
    """Tiny start checkpoints for the training tests: `tiny/{vicuna,clip}` (what `artemis model make-tiny`
    writes) and `stage2` (a stage-2-like model: tiny LLM + projector + tower, no RoI module)."""
    from artemis_cli.model.loading import save_model
    from artemis_cli.model.tiny import build_tiny_artemis, save_tiny_start

    root = tmp_path_factory.mktemp("train_start")
    paths = save_tiny_start(root / "tiny")
    model, tokenizer, _ = build_tiny_artemis(paths["vicuna"], paths["clip"], roi=False, k_means=False)
    # A trained LM gives confident logits; the random init (std 0.02) caps them near 1, which no adapter
    # can overcome while lm_head is frozen (stage 3), so overfitting tests could barely move the loss.
    model.lm_head.weight.data *= 25.0
    save_model(model, tokenizer, root / "stage2")
    return root


@pytest.fixture
def train_workspace(tmp_path, sample, train_start, monkeypatch):
    """A folder laid out as `examples/configs/sample_stage*.yaml` expect, made the working folder:
    artemis-sample/{DATA_ROOT,annotations} (the `sample` fixture), artemis-sample/tiny, and
    artemis-sample/runs/stage2 (the stage-2-like model). Torch runs on one thread (the box is shared)."""
    import torch

    base = tmp_path / "artemis-sample"
    (base / "runs").mkdir(parents=True)
    (base / "DATA_ROOT").symlink_to(sample.data_root)
    (base / "annotations").symlink_to(sample.annotations)
    (base / "tiny").symlink_to(train_start / "tiny")
    (base / "runs" / "stage2").symlink_to(train_start / "stage2")
    monkeypatch.chdir(tmp_path)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield tmp_path
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def one_torch_thread():
    """Torch on one intra-op thread for a module (`pytestmark = pytest.mark.usefixtures(...)`): these ops are
    tiny, and on a shared 2-core box two OpenMP threads spinning against another process made generation
    (and SAM 2's small convolutions) many times slower."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
