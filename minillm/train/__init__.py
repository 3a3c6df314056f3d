"""Training: optimizer, learning-rate schedules, mixed precision, the training loop, checkpoints.

Survey §4.3 (model training): §4.3.1 optimization settings (batch size, learning rate schedule, Adam/AdamW,
stabilization by gradient clipping and weight decay) and §4.3.2 scalable training techniques (mixed precision,
checkpointing). Modules, one idea each:

- ``optim.py``      AdamW written out, parameter groups for weight decay, schedules (cosine, WSD, linear), clipping
- ``precision.py``  autocast / GradScaler policy and bytes-per-parameter memory estimates
- ``trainer.py``    ``Trainer``: the loop with gradient accumulation, clipping, evaluation, hooks, resume
- ``history.py``    what the loop records: history rows, history.jsonl, hooks, MFU
- ``checkpoint.py`` atomic save/load of everything an exact resume needs (weights in safetensors)
"""
