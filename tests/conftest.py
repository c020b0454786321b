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
