"""Training: the flow-matching DiT trainer (`trainer.py`), the VAE trainer (`vae_trainer.py`),
data (`datasets.py`, `buckets.py`, `sources.py`, `cache.py`), recipes (`recipe.py`), parallelism
applied from outside the model (`parallelize.py`, `sequence_parallel.py`), LoRA (`lora.py`),
checkpoints, EMA and the final model folder (`checkpoint.py`, `ema.py`, `export.py`)."""
