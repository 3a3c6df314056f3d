"""Training: the optimizer step, optimizer, learning-rate schedules, mixed precision, the loop, checkpoints.

Survey §4.3 (model training): §4.3.1 optimization settings (batch size, learning rate schedule, Adam/AdamW,
stabilization by gradient clipping and weight decay) and §4.3.2 scalable training techniques (mixed precision,
checkpointing, parallelism). Modules, one idea each, in reading order:

- ``step.py``        ``train_step``: one optimizer step (accumulation, autocast, clipping, NaN guard); every loop
                     takes its steps here (the Trainer, fine-tuning's ``finetune.sft.optimize``)
- ``optim.py``       AdamW written out, parameter groups for weight decay, schedules (cosine, WSD, linear), clipping;
                     ``build_optimizer`` for every ``TrainConfig.optimizer`` (SGD, Adam, AdamW, Adafactor, Lion, Muon)
- ``muon.py``        Muon: Newton-Schulz orthogonalised momentum for the hidden matrices, AdamW for the rest
- ``lion.py``        Lion: one momentum, sign updates (Chen et al. 2023)
- ``precision.py``   autocast / GradScaler policy and bytes-per-parameter memory estimates
- ``trainer.py``     ``Trainer``: the pre-training loop around the step: data, evaluation, hooks, exact resume
- ``budget.py``      ``fit_for_seconds``: train a Trainer for a wall-clock budget, its schedule ending there
- ``history.py``     what the loop records: history rows, history.jsonl, hooks, MFU
- ``checkpoint.py``  atomic save/load of everything an exact resume needs (weights in safetensors)
- ``rundir.py``      run folders: config.json + tokenizer.json in one format for the CLI and the Trainer;
                     ``load_run`` (model, tokenizer) from any run, ``save_run`` (e.g. after merging LoRA)
- ``distributed.py`` the Trainer's data parallelism (DDP / FSDP) behind one ``Parallelism`` object
- ``parallel/``      distributed training written out: DDP, ZeRO-1, FSDP2, tensor and pipeline parallelism
- ``progress.py``    when a training loop draws a progress bar (terminal or notebook, rank 0 only)
- ``launch.py``      ``torchrun`` from Python (notebooks, tests, benches)
- ``memory.py``      activation memory measured, and the activation-checkpointing trade-off
"""
from minillm.train.step import StepResult, lm_loss, train_step
from minillm.train.optim import SGDW, AdamW, build_optimizer, clip_grad_norm_, lr_at, lr_curve, param_groups
from minillm.train.precision import PrecisionPolicy, memory_estimate, param_bytes
from minillm.train.muon import Muon
from minillm.train.lion import Lion
from minillm.train.trainer import Trainer
from minillm.train.budget import fit_for_seconds
from minillm.train.history import read_history
from minillm.train.checkpoint import (latest_checkpoint, list_checkpoints, load_checkpoint, load_checkpoint_state,
                                      save_checkpoint)
from minillm.train.rundir import load_run, save_adapter_run, save_run, write_run_config
from minillm.train.distributed import Parallelism
from minillm.train.progress import show_progress

__all__ = ["show_progress", "save_adapter_run", "train_step", "lm_loss", "StepResult", "AdamW", "SGDW", "Muon", "Lion", "build_optimizer", "param_groups", "lr_at", "lr_curve",
           "clip_grad_norm_", "PrecisionPolicy", "memory_estimate", "param_bytes", "Trainer", "fit_for_seconds", "read_history",
           "save_checkpoint", "load_checkpoint", "load_checkpoint_state", "latest_checkpoint", "list_checkpoints",
           "load_run", "save_run", "write_run_config",
           "Parallelism"]
