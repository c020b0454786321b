"""Small helpers shared by every stage: atomic writes, JSON/JSONL I/O, configs, manifests, console."""
