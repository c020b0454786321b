"""The media tokens of prompts and annotation records, and the feature-file suffixes, in one place."""

from __future__ import annotations

import re

IMAGE_TOKEN = "<image>"
VIDEO_TOKEN = "<video>"
BBOX_TOKEN = "<bbox>"
MEDIA_TOKENS = (IMAGE_TOKEN, VIDEO_TOKEN)  # each becomes one -200 placeholder before splicing
MEDIA_TOKEN = re.compile("|".join(re.escape(token) for token in MEDIA_TOKENS))

# The ids they become in input_ids (the published constants), and the label ignored by the loss.
IGNORE_INDEX = -100
IMAGE_TOKEN_INDEX = -200
BOX_TOKEN_INDEX = -500

# Feature files `artemis` reads, in the order a `<name>.*` twin is looked for (.pkl is the published one).
FEATURE_SUFFIXES = (".pkl", ".pickle", ".npy", ".safetensors")
