"""Data: the DATA_ROOT layout, annotation records, safe feature-file loading, the sample maker."""
