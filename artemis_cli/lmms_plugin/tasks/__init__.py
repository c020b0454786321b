"""lmms-eval task YAMLs for the Artemis plugin (``--include_path`` this folder, or ``LMMS_EVAL_PLUGINS``)."""
