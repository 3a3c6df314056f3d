"""Sampling noise of chapter 06's shipped records: the standard errors behind the prose's "within noise" claims.

Every study scores one seed on a fixed set of problems, so each accuracy is a binomial proportion with standard error
sqrt(p (1 - p) / n), and a difference of two independent ones has sqrt(se1² + se2²). `finetune_noise` reads the
newest record of each study (book.results) and returns those numbers for the chapter's keys
(`@book.ch06_tuning.studies_noise:finetune_noise/peft.z_lora_full`, see book/prose.py).
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from minillm.presets import by_size

from book import results

__all__ = ["binomial_se", "z_score", "reward_se", "grpo_addition_noise", "finetune_noise"]


def binomial_se(p: float, n: int) -> float:
    """Standard error of a proportion p measured on n items."""
    if n <= 0 or not 0.0 <= p <= 1.0:
        raise ValueError(f"need 0 <= p <= 1 and n > 0, got p={p!r}, n={n!r}")
    return math.sqrt(p * (1.0 - p) / n)


def z_score(a: float, b: float, se_a: float, se_b: float) -> float:
    """(a - b) in standard errors of the difference of two independent estimates (0 when both are exact)."""
    se = math.hypot(se_a, se_b)
    return (a - b) / se if se > 0 else 0.0


def reward_se(row: Mapping, n: int) -> float:
    """Approximate standard error of the mean hidden reward of `row`'s sampled replies (one per prompt): correctness
    (+1) and harm (-2) are 0/1 events with the row's rates, taken as independent; politeness never occurs here."""
    correct = row["correctness_sampled"]
    harmful = abs(row["harm_sampled"]) / 2.0
    var = correct * (1 - correct) + 4.0 * harmful * (1 - harmful) + 0.25 * row["style_sampled"] / 0.5 * (
        1 - row["style_sampled"] / 0.5)
    return math.sqrt(var / n)


def _row(rows: Sequence[Mapping], **match) -> Mapping:
    hits = [r for r in rows if all(r.get(k) == v for k, v in match.items())]
    if len(hits) != 1:
        raise KeyError(f"expected one row with {match}, found {len(hits)}")
    return hits[0]


def grpo_addition_noise(rows: Sequence[Mapping], window: int = 20) -> dict:
    """The GRPO-on-addition record in numbers: greedy / sampled held-out exact match before and after with their
    standard errors and z of the change; `swing`, the largest change of greedy exact match between two consecutive
    evaluations (a checkpoint-to-checkpoint variation, larger than the sampling error); the mean training reward,
    KL and share of all-equal groups over the first and the last `window` steps."""
    ev = [r for r in rows if r["kind"] == "eval"]
    st = [r for r in rows if r["kind"] == "step"]
    first, last = ev[0], ev[-1]
    out: dict[str, float] = {"n": first["n"], "n_sampled": first["n_sampled"]}
    for k, n in (("greedy", first["n"]), ("sampled", first["n_sampled"])):
        a, b = first[f"{k}_exact_match"], last[f"{k}_exact_match"]
        out[f"se_{k}_before"] = binomial_se(a, n)
        out[f"z_{k}"] = z_score(b, a, binomial_se(b, n), binomial_se(a, n))
    greedy = [r["greedy_exact_match"] for r in ev]
    out["swing"] = max(abs(b - a) for a, b in zip(greedy, greedy[1:]))
    for tag, part in (("first", st[:window]), ("last", st[-window:])):
        for k in ("reward", "kl", "zero_std_frac"):
            out[f"{k}_{tag}"] = sum(r[k] for r in part) / len(part)
    return out


def finetune_noise() -> dict:
    """{study: {name: value}} for the newest chapter-06 records: `se*` standard errors, `z_*` differences in
    standard errors of a difference, `n` the evaluation items (the record's size profile's setting)."""
    from book.ch06_tuning.studies_peft import study_config
    from book.ch06_tuning.studies_sft import sft_study_config

    recs = results.latest("finetune_studies.jsonl")
    out: dict[str, dict] = {}

    peft = recs["peft_comparison"]
    n = study_config(peft["size"]).n_eval
    acc = {r["method"]: r["accuracy"] for r in peft["rows"]}
    se = {m: binomial_se(p, n) for m, p in acc.items()}
    out["peft"] = {"n": n, "se_full": se["full"], "z_lora_full": z_score(acc["lora"], acc["full"], se["lora"], se["full"]),
                   "z_adapters_full": z_score(acc["adapters"], acc["full"], se["adapters"], se["full"])}

    lora = recs["lora_rank_sweep"]["rows"]
    seen = {(r["rank"], r["alpha"]): r["accuracy_seen"] for r in lora}
    r8, r16 = seen[(8, 64.0)], seen[(16, 64.0)]
    out["lora"] = {"z_r16_r8": z_score(r16, r8, binomial_se(r16, n), binomial_se(r8, n))}

    sft_n = {s: sft_study_config(recs[s]["size"]).n_eval for s in ("diversity", "pretrain_mix", "tuned_vs_untuned")}
    div = [r["heldout_accuracy"] for r in recs["diversity"]["rows"]]
    out["diversity"] = {"n": sft_n["diversity"], "se_mean": binomial_se(sum(div) / len(div), sft_n["diversity"])}

    pm = [r["accuracy"] for r in recs["pretrain_mix"]["rows"]]
    m = sft_n["pretrain_mix"]
    out["pretrain_mix"] = {"n": m, "se_mean": binomial_se(sum(pm) / len(pm), m),
                           "z_max": max(abs(z_score(a, b, binomial_se(a, m), binomial_se(b, m))) for a in pm for b in pm)}

    tu = recs["tuned_vs_untuned"]["rows"]
    m = sft_n["tuned_vs_untuned"]

    def acc_of(**match) -> float:
        return _row(tu, **match)["accuracy"]

    def z(a: float, b: float) -> float:
        return z_score(a, b, binomial_se(a, m), binomial_se(b, m))

    big = {s: acc_of(model="big", prompt_format="plain", split=s) for s in ("train", "heldout")}
    small = {s: acc_of(model="small", tuned=False, split=s) for s in ("train", "heldout")}
    tuned = {s: acc_of(model="small", tuned=True, split=s) for s in ("train", "heldout")}
    out["tuned_vs_untuned"] = {"n": m, "z_size_train": z(big["train"], small["train"]),
                               "z_size_heldout": z(big["heldout"], small["heldout"]),
                               "z_tuned_big_train": z(tuned["train"], big["train"]),
                               "z_tuned_big_heldout": z(tuned["heldout"], big["heldout"])}

    kn = recs["knowledge"]["rows"]
    known, unknown = _row(kn, sft_on="known"), _row(kn, sft_on="unknown")
    nk = known["n_eval_known"]
    a, b = known["heldout_known_accuracy"], unknown["heldout_known_accuracy"]
    out["knowledge"] = {"n": nk, "se_half": binomial_se(0.5, nk), "noise_diff": 2 * math.sqrt(2) * binomial_se(0.5, nk),
                        "z_known_unknown": z_score(a, b, binomial_se(a, nk), binomial_se(b, nk))}

    align = recs["align"]
    na = by_size(32, 128, 256, align["size"])  # prepare_alignment's evaluation prompts per size
    rows = {r["method"]: r for r in align["rows"]}
    sft = rows["sft"]
    out["align"] = {"n": na, "se_sft_sampled": reward_se(sft, na)}
    for meth in ("dpo", "grpo", "ppo"):
        r = rows[meth]
        out["align"][f"z_sampled_{meth}"] = z_score(r["hidden_sampled"], sft["hidden_sampled"], reward_se(r, na),
                                                    reward_se(sft, na))
        out["align"][f"z_exact_{meth}"] = z_score(r["exact_match"], sft["exact_match"],
                                                  binomial_se(r["exact_match"], na), binomial_se(sft["exact_match"], na))
    out["align"]["se_diff_sampled_max"] = max(math.hypot(reward_se(rows[k], na), reward_se(sft, na))
                                              for k in ("dpo", "grpo", "ppo"))
    out["align"]["z_sampled_max"] = max(out["align"][f"z_sampled_{k}"] for k in ("dpo", "grpo", "ppo"))

    kl = recs["kl_sweep"]
    nk = by_size(32, 128, 256, kl["size"])
    ks = kl["rows"]
    ksft = next(r for r in ks if r["beta"] is None)
    by_beta = {r["beta"]: r for r in ks if r["beta"] is not None}
    b0, bmax = by_beta[min(by_beta)], by_beta[max(by_beta)]
    out["kl_sweep"] = {"n": nk,
                       "z_beta0_sft": z_score(b0["hidden_sampled"], ksft["hidden_sampled"], reward_se(b0, nk),
                                              reward_se(ksft, nk)),
                       "z_betamax_beta0": z_score(bmax["hidden_sampled"], b0["hidden_sampled"], reward_se(bmax, nk),
                                                  reward_se(b0, nk))}

    out["grpo_addition"] = grpo_addition_noise(recs["grpo_addition"]["rows"])
    out["all"] = {"se_max_128": binomial_se(0.5, out["peft"]["n"]), "se_max_knowledge": out["knowledge"]["se_half"]}
    return out
