"""Run chapter 06's adaptation studies and append one record per study. Survey §5.1-§5.4.

    python bench/finetune_studies.py                          # every study, laptop profile, one CPU thread
    python bench/finetune_studies.py --only align --only kl_sweep
    python bench/finetune_studies.py --size ci                # seconds per study: a smoke test of this script

Alignment (§5.2): one SFT model and one reward model (`studies_align.prepare_alignment`) are shared by "align"
(SFT -> DPO / GRPO / PPO, judged by the hidden reward) and "kl_sweep" (GRPO at several KL coefficients).
PEFT (§5.3, §5.4): one pretrained base (`studies_peft.pretrain_base`) is shared by "peft_comparison",
"lora_rank_sweep" and "quantization". Instruction tuning (§5.1): the five studies of `studies_sft`. RL with a
verifiable reward (§5.2): "grpo_addition" (`studies_verifiable`, its own base model).
Appends to bench/results/finetune_studies.jsonl: {"study", "size", "rows", "summary", "seconds",
"provenance"}; the chapter shows the latest record of each study beside the reader's own small run. A study's
"seconds" includes the shared setup it triggered first.
"""
from __future__ import annotations

from functools import lru_cache

from book.results import studies_cli

KL_BETAS = (0.0, 0.04, 0.2)
LORA_RANKS, LORA_ALPHAS = (1, 2, 4, 8, 16), (4.0, 16.0, 64.0)


def studies(size: str) -> dict:
    """name -> (function of no arguments returning rows, summary function of the rows)."""
    from book.ch06_tuning import studies_align as al
    from book.ch06_tuning import studies_peft as pe

    def sf():  # imported on first use: the alignment and PEFT studies run without it
        from book.ch06_tuning import studies_sft
        return studies_sft

    @lru_cache(maxsize=1)
    def setup():
        return al.prepare_alignment(seed=0, size=size)

    def va():
        from book.ch06_tuning import studies_verifiable
        return studies_verifiable

    def knowledge_study(**kw):
        from book.ch06_tuning.studies_knowledge import knowledge_study
        return knowledge_study(**kw)

    def base():
        return pe.pretrain_base(size)[0]

    def r3(x):
        return round(float(x), 3)

    def before_after(*vals):  # the first and the last evaluation row
        def summary(rows):
            ev = [r for r in rows if r["kind"] == "eval"]
            return {v: [r3(ev[0][v]), r3(ev[-1][v])] for v in vals}
        return summary

    def by(key, *vals):
        return lambda rows: {str(r[key]): [r3(r[v]) for v in vals] for r in rows}

    return {
        "align": (lambda: al.sft_then_align(setup=setup(), methods=("dpo", "grpo", "ppo"), size=size),
                  by("method", "hidden", "exact_match", "hidden_sampled", "kl")),
        "kl_sweep": (lambda: al.kl_sweep(KL_BETAS, setup=setup(), size=size),
                     by("beta", "hidden_sampled", "learned_sampled", "kl")),
        "peft_comparison": (lambda: pe.peft_comparison(base(), size=size),
                            by("method", "trainable", "accuracy_seen", "accuracy")),
        "lora_rank_sweep": (lambda: pe.lora_rank_sweep(base(), LORA_RANKS, LORA_ALPHAS, size=size),
                            lambda rows: {f"r{r['rank']}/a{r['alpha']:g}": r3(r["accuracy_seen"]) for r in rows}),
        "quantization": (lambda: pe.quantization_cost(base(), pe.pretraining_text(size, seed=99)[:40_000]),
                         lambda rows: {f"{r['bits']}/{r['group_size']}": r3(r["delta_ppl"]) for r in rows}),
        "diversity": (lambda: sf().diversity_vs_count(size=size),
                      lambda rows: {f"t{r['n_templates']}/n{r['n_examples']}": [r3(r["heldout_accuracy"]),
                                                                            r3(r["seen_accuracy"])] for r in rows}),
        "mixing": (lambda: sf().mixing_study(size=size),
                   lambda rows: {"/".join(f"{k}:{v:g}" for k, v in r["mix"].items()):
                                 {k: r3(v) for k, v in r["accuracy"].items()} for r in rows}),
        "pretrain_mix": (lambda: sf().pretrain_mix_study(size=size), by("pretrain_share", "forgetting", "accuracy")),
        "knowledge": (lambda: knowledge_study(size=size),
                      by("sft_on", "base_recall", "heldout_known_accuracy", "unknown_hallucination_rate")),
        "grpo_addition": (lambda: va().grpo_addition(size=size),
                          before_after("greedy_exact_match", "sampled_exact_match", "format_ok")),
        "tuned_vs_untuned": (lambda: sf().tuned_vs_untuned(size=size),
                             lambda rows: {f"{r['model']}/{'tuned' if r['tuned'] else 'base'}/{r['prompt_format']}/"
                                           f"{r['split']}": r3(r["accuracy"]) for r in rows}),
    }


def main() -> None:
    studies_cli(__doc__.splitlines()[0], "finetune_studies.jsonl", studies)


if __name__ == "__main__":
    main()
