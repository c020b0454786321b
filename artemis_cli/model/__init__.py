"""The Artemis model: LLaVA-style Llama, projector, multi-level RoI module, loading, prompts.

Entry points (import from the submodules; they pull in torch/transformers):
- `llava.ArtemisForCausalLM` (forward / generate / prepare_multimodal_inputs), `llava.LORA_TARGET_MODULES`
- `config.build_config`, `config.read_config_json`, `config.MMSettings`, placeholder ids -200 / -500
- `loading.load_model`, `loading.save_model`, `loading.merge_lora`
- `conversation.tokenize_prompt`, `conversation.tokenize_conversation`, `conversation.chat_prompt`,
  `conversation.referring_question`
- `sampling.sample_roi_frames`, `sampling.normalise_boxes`, `sampling.load_roi_inputs`
- `kmeans.select_rois`, `roi.MultiLevelRoIModule`, `inspect.inspect_model`, `tiny.build_tiny_artemis`
"""
