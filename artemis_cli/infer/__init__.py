"""`artemis infer`: VideoRefBench, zero-shot video QA and the Video-ChatGPT benchmark; `merge` of shards."""

from artemis_cli.infer.runner import InferConfig, InferSummary, QATask, VCGTask, VideoRefBenchTask, infer
from artemis_cli.infer.shards import MergeReport, merge_predictions

__all__ = ["InferConfig", "InferSummary", "MergeReport", "QATask", "VCGTask", "VideoRefBenchTask", "infer",
           "merge_predictions"]
