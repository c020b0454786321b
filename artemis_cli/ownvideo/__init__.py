"""Artemis on one's own video: track a box, extract the clip feature, ask about the target.

`referrer.Referrer` is the library entry point (the CLI's `track`, `ask`, `chat`, the web page and the
server all go through it or through `prepare_target`); `trackers` propagates a box (CSRT, KCF, SAM 2),
`video` reads videos and frame folders, `cache` holds the feature and track caches, `record` builds
and writes VideoRef records.
"""
