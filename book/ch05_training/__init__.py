"""Chapter 05, Model training (Survey §4.3): the code of chapters/05_training.ipynb.

In reading order:

    studies.py            learning rate, warmup, schedules, batch size and the gradient noise scale
    studies_stability.py  weight decay, clipping, a loss spike and its recovery
    plots.py              their figures
    studies_optim.py      optimizers compared at their own tuned lr, state bytes measured; weight decay and clipping
                          norms and clip rates
    plots_optim.py        their figures and tables
    plots_accounting.py   the compute and 3D-parallelism explorers (widgets on minillm.accounting); fp16 underflow
    studies_parallel.py   DDP through the CLI against one process; the lab's all-reduce under torchrun
    studies_parallel_live.py    ZeRO-1, tensor (minillm and torch's parallelize_module) and GPipe parallelism live on 2
                                gloo processes: equal to one process, per-rank memory and bytes sent measured
    studies_parallel_worker.py  the torchrun worker those runs launch (one job, every form; a c10d byte counter)
    plots_parallel_live.py      their figure: bytes each rank holds, bytes it sends vs the formula
"""
