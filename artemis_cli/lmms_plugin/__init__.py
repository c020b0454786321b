"""The lmms-eval plugin: ``lmms-eval --model artemis --tasks artemis_videorefer_q,...`` runs Artemis.

- The model: an entry point in group ``lmms_eval.models`` (`manifest`) registers ``artemis``
  (`models.artemis.Artemis`, a "simple" lmms-eval model); ``LMMS_EVAL_PLUGINS=artemis_cli.lmms_plugin``
  (lmms-eval's older plugin mechanism) finds it too, through `models.AVAILABLE_MODELS`.
- Our tasks: ``tasks/`` holds one lmms-eval task per peer benchmark and VideoRefBench
  (``artemis_videorefbench``, ``artemis_videorefer_d``, ``artemis_videorefer_q``, ``artemis_plm_rcap``),
  reached with ``--include_path <tasks folder>`` (`tasks_dir`) or ``LMMS_EVAL_PLUGINS=artemis_cli.lmms_plugin``.
  Their inputs come from environment variables named after the benchmark's inputs
  (`samples.input_variable`), read by the same readers as `artemis infer`, so a record is prepared once,
  one way; Artemis answers them through its RoI path. Other lmms-eval tasks (video QA) run through
  Artemis' clip-feature path, with the features of their videos from ``--model_args features=DIR``.

lmms-eval is not a dependency (its wheel pins ``av<16`` and ``opencv-python-headless``, which clash with
``artemis[all]``): install it in its own environment (see the README).
"""

from __future__ import annotations

from pathlib import Path

MODEL_ID = "artemis"
CLASS_PATH = "artemis_cli.lmms_plugin.models.artemis.Artemis"


def manifest():
    """The ``lmms_eval.models`` entry point: lmms-eval's `ModelManifest` for ``artemis``."""
    from lmms_eval.models.registry_v2 import ModelManifest

    return ModelManifest(model_id=MODEL_ID, simple_class_path=CLASS_PATH)


def tasks_dir() -> Path:
    """The folder of our lmms-eval task YAMLs (for ``--include_path``)."""
    return Path(__file__).resolve().parent / "tasks"
