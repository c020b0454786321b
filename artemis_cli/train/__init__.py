"""Training the three Artemis stages on the HF Trainer (+ DeepSpeed, peft), with the published recipes.

Entry points (import from the submodules; they pull in torch/transformers):
- `run.train(config, resume=, overwrite=, skip_bad=)` -> `run.TrainResult`
- `config.load_train_config(stage, path, overrides)` -> `config.TrainConfig`
- `referring.referring_inputs(record, ...)`: one referring record -> model inputs (shared with inference)
- `samples.conversation_sample`, `datasets.make_dataset`, `collator.Collator`, `sampler.GroupedSampler`
- `model_setup.build_stage_model`, `outputs.save_stage_output` / `load_stage_state`
- `launch.deepspeed_config_path` (shipped `ds_configs/zero2*.json`, `zero3*.json`)
"""
