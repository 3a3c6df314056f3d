"""Run chapter 07's studies and append one record per study. Survey §4.2.4, §6, §7.

    python bench/utilization_studies.py                       # every study, laptop profile, one CPU thread
    python bench/utilization_studies.py --only decoding --only prompting
    python bench/utilization_studies.py --size ci             # seconds per study: a smoke test of this script

"decoding", "prompting" and "ppl_vs_accuracy" share the chapter's models (`utilization.chapter_models`, trained
once per process); "tools" (`tool_study`) and "contamination" (`contamination_demo`) train their own.
Appends to bench/results/utilization_studies.jsonl: {"study", "size", "rows", "seconds", "provenance"}; the
chapter shows the latest record of each beside the reader's own small run. The KV-cache speed has its own
script, bench/kv_cache.py.
"""
from __future__ import annotations

from book.results import studies_cli


def studies(size: str) -> dict:
    """name -> (function of no arguments returning rows, None: these records carry no summary)."""
    from book.ch07_utilization_eval import studies as ut

    def models():
        return ut.chapter_models(size)

    def tools():
        from book.ch07_utilization_eval.studies_tools import tool_study
        return tool_study(size=size)

    def contamination():
        from book.ch07_utilization_eval.studies_contamination import contamination_demo
        return contamination_demo(size=size)

    return {
        "decoding": (lambda: ut.decoding_sweep(models()[-1], size=size), None),
        "prompting": (lambda: ut.prompting_study(models(), size=size), None),
        "ppl_vs_accuracy": (lambda: ut.ppl_vs_accuracy(models(), size=size), None),
        "tools": (tools, None),
        "contamination": (contamination, None),
    }


def main() -> None:
    studies_cli(__doc__.splitlines()[0], "utilization_studies.jsonl", studies)


if __name__ == "__main__":
    main()
