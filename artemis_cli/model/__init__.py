"""The Artemis model: LLaVA-style Llama, projector, multi-level RoI module, loading, prompts."""
