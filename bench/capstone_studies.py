"""Run chapter 09's capstone studies and append one record per study. Survey §2.1, §4.1-§4.3, §5.1-§5.2, §7.

    python bench/capstone_studies.py --threads 2              # every study, laptop profile (the shipped record)
    python bench/capstone_studies.py --only tokenizer --only sizing
    python bench/capstone_studies.py --size ci                # seconds per study: a smoke test of this script

The studies share their expensive parts, each trained once per process and in this order: the corpus and tokenizer
(`corpus`), the modern pretrain (`studies_pretrain.pretrain_modern`, which "pretrain" and every later study start
from), the SFT poet ("sft"; "grpo" and "hacking" start from it). A study's "seconds" includes the shared setup it
triggered first, so the record's seconds add up to the chapter's time at that size.

Appends to bench/results/capstone_studies.jsonl: {"study", "size", "rows", "summary", "settings", "seconds",
"provenance"}. The chapter shows the latest record of each study beside the reader's own run, and its prose
quotes them by key (book.prose).
"""
from __future__ import annotations

import tempfile
from functools import lru_cache

from book.results import studies_cli


def _r(x, n: int = 4):
    return None if x is None else round(float(x), n)


def _clean(v):
    """JSON-ready: numpy scalars and arrays as Python numbers and lists, bytes as text, tuples as lists."""
    import numpy as np

    if isinstance(v, dict):
        return {str(k): _clean(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_clean(x) for x in v]
    if isinstance(v, np.ndarray):
        return _clean(v.tolist())
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, bytes):
        return v.decode("utf-8", errors="backslashreplace")
    return v


def _stage(name: str, ev: dict) -> dict:
    """One evaluation (studies_poet.form_eval) as a record row: the numbers and the samples, not every response."""
    row = {"stage": name, "n": ev["n"], "heldout_loss": _r(ev["heldout_loss"])}
    for d in ("greedy", "sampled"):
        row[d] = {"adherence": _r(ev[d]["adherence"]), "by_form": {k: _r(v) for k, v in ev[d]["by_form"].items()},
                  "distinct_ratio": _r(ev[d]["distinct_ratio"]), "unique_share": _r(ev[d]["unique_share"])}
    row["samples"] = ev["samples"]
    return row


def studies(size: str) -> dict:
    """name -> (function of no arguments returning rows, summary function of the rows)."""
    import copy
    import importlib

    from book.ch09_capstone import studies_pretrain as pt
    from book.ch09_capstone import studies_sizing as sz
    from book.ch09_capstone.studies_corpus import capstone_corpus

    def mod(name):  # the poet, RL and export modules are imported by the studies that use them
        return importlib.import_module(f"book.ch09_capstone.{name}")

    corpus = capstone_corpus(size)

    @lru_cache(maxsize=1)
    def sizing_rows():
        return sz.isoflop_sweep(size)

    @lru_cache(maxsize=1)
    def sft():
        model, tok = pt.pretrain_base(size)
        po = mod("studies_poet")
        return po.sft_poet(model, tok, corpus, po.poet_config(size))

    def tokenizer():
        tk = mod("studies_tokenizer")
        cfg = tk.tokenizer_config(size, model=pt.pretrain_config(size).model_config("modern"))
        t = tk.teaching_comparison(corpus, cfg)
        return ([{"part": "sweep", **r} for r in tk.bytes_per_token_rows(corpus, cfg)]
                + [{"part": "mixture", **r} for r in tk.mixture_rows(corpus, cfg)]
                + [{"part": "teaching", **r} for r in t.rows]
                + [{"part": "teaching_summary", "same_merges_share": t.same_merges_share,
                    "token_count_gap": t.token_count_gap, "same_ids_on_same_merges": t.same_ids_on_same_merges,
                    "train_speedup": t.train_speedup, "encode_speedup": t.encode_speedup}])

    def sizing():
        rows = sizing_rows()
        alloc = sz.allocation(rows, pt.pretrain_config(size).flops_budget)
        return [{"part": "run", **r} for r in rows] + [{"part": "allocation", "budget": alloc.budget,
                                                         "n_opt": alloc.n_opt, "d_opt": alloc.d_opt,
                                                         "l_opt": alloc.l_opt, "a": alloc.a, "b": alloc.b,
                                                         "method": alloc.method, "note": alloc.note,
                                                         "extrapolation": alloc.extrapolation}]

    def pretrain():
        rows = pt.compare_recipes(size)
        pred = sz.prediction_vs_result(sizing_rows(), pt.pretrain_modern(size))
        return [{"part": "recipe", **r} for r in rows] + [{"part": "prediction", **pred}]

    def sft_rows():
        res = sft()
        return ([{"part": "curve", **r} for r in res.rows] + [{"part": "stage", **_stage("base", res.before)},
                                                              {"part": "stage", **_stage("sft", res.after)}]
                + [{"part": "meta", "pairs": res.n_pairs, "rows": res.n_rows, "seconds": res.seconds}])

    def grpo(hack: bool):
        res_sft = sft()
        tok = pt.pretrain_base(size)[1]
        gr = mod("studies_grpo")
        run = gr.reward_hacking if hack else gr.grpo_poet
        res = run(res_sft.model, tok, corpus, gr.grpo_poet_config(size))
        return ([{"part": "row", **r} for r in res.rows] + [{"part": "stage", **_stage("hacking" if hack else "grpo", res.after)}]
                + [{"part": "meta", "seconds": res.seconds, **res.meta}])

    def use():
        model, tok = pt.pretrain_base(size)
        poet = sft().model
        us = mod("studies_use")
        cfg = us.use_config(size)
        kv = us.kv_cache_rows(poet, tok, us.use_prompts(cfg, tok), cfg.new_tokens, repeats=cfg.repeats)
        with tempfile.TemporaryDirectory() as d:
            us.export_hf(copy.deepcopy(poet), tok, d)
            hf = us.hf_greedy_check(poet, tok, d, us.use_prompts(cfg, tok), cfg.new_tokens)
        return [{"part": "kv_cache", **r} for r in kv] + [{"part": "hf", **{k: v for k, v in r.items()
                                                                           if k not in ("minillm_ids", "hf_ids")}}
                                                          for r in hf]

    def part(rows, name):
        return [r for r in rows if r["part"] == name]

    def stage(rows, name="stage"):
        return {r["stage"]: r["greedy"]["adherence"] for r in part(rows, name)}

    table = {
        "tokenizer": (tokenizer, lambda rows: {f"{r['tokenizer']}{r['vocab_size']}": [_r(r["en_bytes_per_token"], 3),
                                                                                     _r(r["zh_bytes_per_token"], 3)]
                                               for r in part(rows, "sweep")}),
        "sizing": (sizing, lambda rows: {k: _r(v) if isinstance(v, float) else v
                                         for k, v in part(rows, "allocation")[0].items() if k != "note"}),
        "pretrain": (pretrain, lambda rows: {**{r["recipe"]: [_r(r["heldout_loss"]), _r(r["bpb_en"]), _r(r["bpb_zh"]),
                                                             _r(r["seconds"], 1)] for r in part(rows, "recipe")},
                                             "predicted": _r(part(rows, "prediction")[0]["predicted_loss"])}),
        "sft": (sft_rows, stage),
        "grpo": (lambda: grpo(False), stage),
        "hacking": (lambda: grpo(True), stage),
        "use": (use, lambda rows: {"hf_equal": all(r["equal"] for r in part(rows, "hf")),
                                   "max_logit_diff": max(r["max_logit_diff"] for r in part(rows, "hf"))}),
    }
    return {k: ((lambda fn=fn: _clean(fn())), summary) for k, (fn, summary) in table.items()}


def main() -> None:
    studies_cli(__doc__.splitlines()[0], "capstone_studies.jsonl", studies)


if __name__ == "__main__":
    main()
