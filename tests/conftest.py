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
