"""The functions our task YAMLs name (``!function utils.<name>``); the work is in `artemis_cli.lmms_plugin.samples`."""

from artemis_cli.lmms_plugin import samples


def videorefbench_docs(dataset):
    return samples.documents_dataset("videorefbench")


def videorefer_d_docs(dataset):
    return samples.documents_dataset("videorefer-d")


def videorefer_q_docs(dataset):
    return samples.documents_dataset("videorefer-q")


def plm_rcap_docs(dataset):
    return samples.documents_dataset("plm-rcap")


def doc_to_visual(doc):
    video = samples.sample_of(doc).video
    return [str(video)] if video is not None else []


def doc_to_text(doc, lmms_eval_specific_kwargs=None):
    return doc["prompt"]


def prediction(doc, results):
    return {samples.METRICS[doc["artemis_benchmark"]]: samples.prediction_line(doc, results[0])}


def mcq_accuracy(lines):
    return samples.mcq_accuracy(lines)


def caption_scores(lines):
    return samples.caption_scores(lines)


def judged_scores(lines):
    return samples.judged_scores(lines)
