"""Trainers: fine-tune, preference-tune, search hyperparameters and export local models.

Adapters that know nothing of the registry: the service layer passes rows already loaded from a
dataset version, an output directory and a :class:`~llmloop.trainers.base.Tracker`; each entry
point returns a pydantic result value.

- ``base``: ``Tracker`` (with ``NullTracker``, ``RecordingTracker``), ``TrainerConfig``,
  ``LoraSettings``, ``TrainResult``;
- ``pretrain.init_base``: a tiny Llama built and briefly pre-trained on texts (the demo base);
- ``sft.run_sft``: TRL ``SFTTrainer`` + PEFT on chat, instruction or text rows;
- ``dpo.run_dpo``: TRL ``DPOTrainer`` on prompt/chosen/rejected rows;
- ``hpo.run_hpo``: Optuna TPE + pruning (or Ray Tune), single or multi-objective;
- ``export``: merge LoRA, int8 for CPU, GGUF; each with its measured perplexity delta.

Importing this package or the config modules never imports torch; the heavy libraries are
imported when a run starts.
"""
