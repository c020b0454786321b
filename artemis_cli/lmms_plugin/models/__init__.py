"""lmms-eval's older plugin lookup (``LMMS_EVAL_PLUGINS=artemis_cli.lmms_plugin``): model name -> class in
``models/<name>.py``."""

AVAILABLE_MODELS = {"artemis": "Artemis"}
