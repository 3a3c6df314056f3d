"""The cleaned crawl against the raw one (Survey §4.1.2): does cleaning buy a better model?

`crawl_experiment` runs `minillm.data.curation`'s pipeline on a synthetic crawl, trains the same small GPT on the
raw extracted text and on the pipeline's output (same token budget) and scores both on fresh clean text.
"""
from __future__ import annotations

from minillm.data.crawl import generate_crawl
from minillm.data.curation import PipelineConfig, run_pipeline, stage_rows
from book.runs import Run


def crawl_experiment(n_pages: int = 2000, seed: int = 0, run: Run | None = None, cfg: PipelineConfig = PipelineConfig(),
                     n_eval_docs: int = 200) -> dict:
    """Train the same small GPT on the raw extracted crawl and on the pipeline's output (same token budget) and
    score both on fresh clean English and Chinese text. Returns raw_vs_clean's dict plus pages kept and the
    stage table ("stages")."""
    from book.ch03_data.studies_experiments import raw_vs_clean
    from minillm.data.synthetic import corpus

    run = run or Run()
    crawl = generate_crawl(n_pages, seed=seed)
    res = run_pipeline(crawl, cfg)
    eval_sets = {"english": corpus("story", n_eval_docs, seed + 303).docs,
                 "chinese": corpus("story_zh", n_eval_docs, seed + 303).docs}
    out = raw_vs_clean([t for t in res.texts if t], res.cleaned, eval_sets, run)
    out.update({"pages": n_pages, "kept": int(res.keep.sum()), "raw_chars": sum(map(len, res.texts)),
                "clean_chars": sum(map(len, res.cleaned)), "stages": stage_rows(res)})
    return out
