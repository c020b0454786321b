"""`artemis infer`: VideoRefBench, zero-shot video QA, the Video-ChatGPT benchmark and the peers' region
benchmarks (VideoRefer-Bench-D/Q, PLM-VideoBench RCap); `merge` of shards."""

from artemis_cli.infer.runner import InferConfig, InferSummary, QATask, RegionTask, VCGTask, VideoRefBenchTask, infer
from artemis_cli.infer.shards import MergeReport, merge_predictions

__all__ = ["InferConfig", "InferSummary", "MergeReport", "QATask", "RegionTask", "VCGTask", "VideoRefBenchTask", "infer",
           "merge_predictions"]
