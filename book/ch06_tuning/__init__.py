"""Chapter 06, Adaptation: instruction tuning, alignment, PEFT, quantization (Survey §5): the code of chapters/06_tuning.ipynb.

In reading order:

    studies_sft.py        instruction-data studies: diversity vs count, mixing, pretraining rows, tuned vs untuned
    studies_knowledge.py  SFT elicits known facts; SFT on unknown facts teaches guessing
    plots_sft.py          their figures
    studies_align.py      SFT -> reward model -> DPO / GRPO / PPO on a known hidden reward; the KL sweep
    studies_verifiable.py GRPO with a verifiable reward (a parsed exact answer) on two-digit addition
    studies_peft.py       LoRA, adapters, prefix and prompt tuning against full fine-tuning; int8 / int4
    plots.py              alignment, PEFT and quantization figures and widgets
    studies_noise.py      the standard errors behind the chapter's "within noise" sentences, from the records
"""
