"""Per-video CLIP clip features: the published recipe (`recipe`), decoding, towers, extraction, inspection.

Entry points: `artemis_cli.features.extract.extract_features(ExtractConfig)` and
`artemis_cli.features.inspect.inspect_features(paths)`.
"""
