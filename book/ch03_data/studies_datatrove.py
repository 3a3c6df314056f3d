"""Chapter 03 at scale: the same synthetic crawl through datatrove, the library that built FineWeb (Survey §4.1.2).

`datatrove_pipeline` writes the crawl's HTML pages as datatrove Documents (JSONL, one file per task) and runs
FineWeb's recipe in `LocalPipelineExecutor`s with several tasks and workers, all in a temporary folder:

    Trafilatura (HTML -> text) -> language by script -> GopherRepetitionFilter -> GopherQualityFilter
    -> C4QualityFilter -> MinHash dedup (signatures, buckets, clusters, filter)

`teaching_pipeline` runs the same stages of `minillm.data.curation.run_pipeline` (extraction, language, the
quality filters it keeps by default, exact and near dedup), timed stage by stage. `score_kept` scores either kept
set on the crawl's ground truth the same way: a page is *good* when it is clean, English or Chinese, and not a
copy of another page, and a page and its copies count once (see `score_kept`).

What runs offline and what does not (nothing here downloads):
- datatrove's `LanguageFilter` needs fastText's lid.176 model, a download: `ScriptLanguage` below tags each page
  by script instead (minillm's `script_language`) and drops other scripts, as the teaching pipeline does.
- datatrove's English word tokenizer is NLTK's Punkt, whose model is a download too: `RegexWords` is a
  `WordTokenizer` (datatrove's documented extension point) that splits words and punctuation by regex and Han
  characters one by one, so MinHash shingles Chinese by characters as the teaching pipeline does.
- Gopher's and C4's rules are English rules (word counts, stop words, lines ending in punctuation): FineWeb-2
  re-tunes them per language with a proper word segmenter. Here they apply to English pages only
  (`EnglishGopherRepetition`, `EnglishGopherQuality`, `EnglishC4Quality`); Chinese pages go through extraction,
  language and MinHash dedup alone.
- MinHash hashes with sha1 (`HashConfig(hash_fc="sha1")`), which needs no `xxhash` package.
"""
from __future__ import annotations

import contextlib
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import regex

from datatrove.data import Document
from datatrove.pipeline.filters import C4QualityFilter, GopherQualityFilter, GopherRepetitionFilter
from datatrove.pipeline.filters.base_filter import BaseFilter
from datatrove.utils.word_tokenizers import WordTokenizer
from minillm.data.clean import (CharNgramLM, extract_text, heuristic_filter, keyword_filter, perplexity_filter,
                                perplexity_threshold, script_language)
from minillm.data.crawl import Crawl
from minillm.data.curation import PipelineConfig, reference_texts
from minillm.data.dedup import exact_dedup, near_dedup

TEACHING_STAGES = ("extract", "language", "heuristic", "keyword", "perplexity", "exact_dup", "near_dup")
DATATROVE_STAGES = ("extract", "language", "gopher_repetition", "gopher_quality", "c4_quality", "minhash")


def good_pages(crawl: Crawl) -> np.ndarray:
    """(D,) bool: the originals worth keeping: clean, English or Chinese, not a copy of another page."""
    labels = crawl.labels()
    return (labels["quality"] == "clean") & (labels["language"] != "other") & (labels["duplicate_of"] < 0)


def score_kept(keep: np.ndarray, crawl: Crawl) -> dict:
    """Score a kept set on the crawl's truth, by content: a page and its copies are one *group*.

    recall = share of good groups (a good original and its copies) with at least one page kept; precision = good
    groups kept / pages kept, so a junk page and every kept page beyond the first of its group both count against
    it; "redundant" = kept pages beyond the first of their group. Keeping a copy instead of its original is as
    good as keeping the original (datatrove's MinHash keeps any one page of a cluster, our dedup the first)."""
    keep = np.asarray(keep, dtype=bool)
    if keep.shape != (len(crawl),):
        raise ValueError(f"keep has shape {keep.shape}; expected ({len(crawl)},), one decision per page of the crawl")
    dup_of = crawl.labels()["duplicate_of"]                                      # page ids are 0..D-1
    group = np.where(dup_of >= 0, dup_of, np.arange(len(crawl)))                 # (D,) the original's index
    good = good_pages(crawl)
    kept_per_group = np.bincount(group[keep], minlength=len(crawl))              # (D,) kept pages per original
    hit = int(((kept_per_group > 0) & good).sum())
    n_kept = int(keep.sum())
    return {"kept": n_kept, "good": int(good.sum()),
            "precision": hit / n_kept if n_kept else float("nan"),
            "recall": hit / int(good.sum()) if good.any() else float("nan"),
            "redundant": int(np.maximum(kept_per_group - 1, 0).sum())}


def teaching_pipeline(crawl: Crawl, cfg: PipelineConfig = PipelineConfig()) -> tuple[dict[str, np.ndarray], dict[str, float]]:
    """`run_pipeline`'s stages up to near dedup (no classifiers, decontamination or PII), timed one by one.

    Returns (stage -> (D,) bool kept after that stage and all before it, stage -> seconds). Its last kept set
    equals run_pipeline's kept set before decontamination."""
    keeps, seconds = {}, {}
    keep = np.ones(len(crawl), dtype=bool)

    def stage(name: str, t0: float, drop: np.ndarray) -> None:
        nonlocal keep
        keep = keep & ~drop
        keeps[name], seconds[name] = keep.copy(), time.perf_counter() - t0

    t0 = time.perf_counter()
    texts = [extract_text(p.html) for p in crawl.pages]
    stage("extract", t0, np.array([not t for t in texts]))
    t0 = time.perf_counter()
    lang = np.array([script_language(t) for t in texts])                          # (D,)
    stage("language", t0, lang == "other")
    rule_lang = np.where(lang == "zh", "zh", "en").tolist()
    t0 = time.perf_counter()
    stage("heuristic", t0, heuristic_filter(texts, rule_lang, cfg.rules).drop)
    t0 = time.perf_counter()
    stage("keyword", t0, keyword_filter(texts, max_hits=cfg.keyword_max_hits).drop)
    t0 = time.perf_counter()                                                       # the LMs' training counts here
    ref = reference_texts(cfg.n_reference_docs, cfg.seed + 101)
    held = reference_texts(max(50, cfg.n_reference_docs // 4), cfg.seed + 202)
    lms = {k: CharNgramLM(order=4).fit(v) for k, v in ref.items()}
    limits = {k: perplexity_threshold(lms[k], held[k], cfg.perplexity_quantile) for k in lms}
    stage("perplexity", t0, perplexity_filter(texts, lms, limits, rule_lang).drop)
    # dedup runs on every page, as run_pipeline does: a copy goes even when its original was filtered out
    t0 = time.perf_counter()
    stage("exact_dup", t0, ~exact_dedup(texts).keep)
    t0 = time.perf_counter()
    near = np.zeros(len(texts), dtype=bool)
    for language, unit in (("en", "word"), ("zh", "char")):                       # Chinese has no spaces
        idx = np.flatnonzero(lang == language)
        if len(idx) > 1:
            res = near_dedup([texts[i] for i in idx], cfg.near_threshold, cfg.num_perm, 5, unit, cfg.seed + 1)
            near[idx] = ~res.keep
    stage("near_dup", t0, near)
    return keeps, seconds


# --- datatrove's side: the extensions it documents (a WordTokenizer, BaseFilter subclasses), then the pipeline ---

_WORD = regex.compile(r"\p{Han}|[\p{L}\p{N}_'’-]+|[^\s\p{L}\p{N}]")            # a Han character, a word, a symbol
_SENTENCE = regex.compile(r"(?<=[.!?。！？])\s+")


class RegexWords(WordTokenizer):
    """Words, punctuation and single Han characters by regex: NLTK's Punkt model is a download."""

    def word_tokenize(self, text: str) -> list[str]:
        return _WORD.findall(text)

    def sent_tokenize(self, text: str) -> list[str]:
        return [s for s in _SENTENCE.split(text) if s.strip()]

    def span_tokenize(self, text: str) -> list[tuple[int, int]]:
        return [m.span() for m in _WORD.finditer(text)]


class ScriptLanguage(BaseFilter):
    """Stand-in for LanguageFilter (fastText's model is a download): tag the script's language, drop others."""

    name = "🔤 language by script"

    def filter(self, doc: Document) -> bool | tuple[bool, str]:
        doc.metadata["language"] = script_language(doc.text)
        return doc.metadata["language"] != "other" or (False, "other_script")


class EnglishGopherRepetition(GopherRepetitionFilter):
    """FineWeb's rule on English pages only (Chinese would need re-tuned rules and a word segmenter)."""

    def filter(self, doc: Document) -> bool | tuple[bool, str]:
        return doc.metadata.get("language") != "en" or super().filter(doc)


class EnglishGopherQuality(GopherQualityFilter):
    """FineWeb's rule on English pages only."""

    def filter(self, doc: Document) -> bool | tuple[bool, str]:
        return doc.metadata.get("language") != "en" or super().filter(doc)


class EnglishC4Quality(C4QualityFilter):
    """FineWeb's rule on English pages only."""

    def filter(self, doc: Document) -> bool | tuple[bool, str]:
        return doc.metadata.get("language") != "en" or super().filter(doc)


def _removed_ids(folder: Path) -> set[int]:
    """Page ids an exclusion writer wrote under `folder` (JSONL, gzip or not)."""
    import gzip

    ids: set[int] = set()
    for f in sorted(folder.glob("*.jsonl*")):
        opener = gzip.open if f.suffix == ".gz" else open
        with opener(f, "rt", encoding="utf-8") as fh:
            ids.update(int(json.loads(line)["id"]) for line in fh if line.strip())
    return ids


def _step_seconds(logging_dir: Path) -> dict[str, float]:
    """Total seconds each step spent over all tasks, from an executor's stats.json (step name -> seconds)."""
    stats = json.loads((logging_dir / "stats.json").read_text())
    return {s["name"]: float(s["time_stats"]["total"]) for s in stats if "time_stats" in s}


@contextlib.contextmanager
def _stderr_to(path: Path):
    """Point file descriptor 2 (what worker processes inherit) at `path` for the block, then restore it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    sys.stderr.flush()
    saved = os.dup(2)
    with open(path, "w") as f:
        os.dup2(f.fileno(), 2)
        try:
            with contextlib.redirect_stderr(f):
                yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)


def datatrove_pipeline(crawl: Crawl, tasks: int = 4, workers: int = 2, workdir: str | Path | None = None,
                       quiet: bool = True) -> tuple[dict[str, np.ndarray], dict]:
    """Run FineWeb's recipe (see the module docstring) on `crawl` in datatrove's LocalPipelineExecutor.

    Returns (stage -> (D,) bool kept after that stage and all before it, timing) where timing holds "seconds"
    (wall clock of each executor: filtering, then MinHash's four stages) and "step_seconds" (CPU seconds each
    step spent summed over tasks, from datatrove's own stats). Files go to `workdir`, else a temporary folder."""
    from datatrove.executor import LocalPipelineExecutor
    from datatrove.pipeline.dedup import (MinhashConfig, MinhashDedupBuckets, MinhashDedupCluster,
                                          MinhashDedupFilter, MinhashDedupSignature)
    from datatrove.pipeline.extractors import Trafilatura
    from datatrove.pipeline.readers import JsonlReader
    from datatrove.pipeline.writers import JsonlWriter
    from datatrove.utils.hashing import HashConfig

    if not isinstance(crawl, Crawl):
        raise TypeError(f"crawl must be a minillm.data.crawl.Crawl (from generate_crawl), got {type(crawl).__name__}")
    if not (isinstance(tasks, int) and isinstance(workers, int) and tasks >= 1 and workers >= 1):
        raise ValueError(f"tasks={tasks!r} and workers={workers!r} must be positive ints")
    main_file = getattr(sys.modules["__main__"], "__file__", None)
    if workers > 1 and main_file is not None and not os.path.isfile(main_file):
        # datatrove's worker processes start by "forkserver", which re-runs the caller's __main__ from its file;
        # code piped to `python -` has none, and the pool then never finishes (seen here, not an error)
        raise RuntimeError(f"__main__ comes from {main_file!r}, not a file, so datatrove's worker processes cannot "
                           "start: run this from a script file, a notebook or `python -c`, or pass workers=1")
    with contextlib.ExitStack() as stack:
        root = Path(workdir) if workdir is not None else Path(stack.enter_context(tempfile.TemporaryDirectory()))
        if quiet:  # datatrove's tasks log to file descriptor 2 (also to root/logs_*/): send it to a file
            stack.enter_context(_stderr_to(root / "stderr.log"))
        (root / "input").mkdir(parents=True, exist_ok=True)
        for rank in range(tasks):  # one input file per task: JsonlReader shares files out among tasks
            with open(root / "input" / f"{rank:05d}.jsonl", "w", encoding="utf-8") as f:
                for p in crawl.pages[rank::tasks]:
                    f.write(json.dumps({"id": str(p.id), "text": p.html}, ensure_ascii=False) + "\n")
        words = RegexWords()
        removed = {s: root / "removed" / s for s in DATATROVE_STAGES[1:]}
        excl = lambda s: JsonlWriter(str(removed[s]), compression=None)  # noqa: E731
        minhash = MinhashConfig(hash_config=HashConfig(hash_fc="sha1", precision=64))  # FineWeb's 14 bands x 8 rows
        run = lambda name, pipeline, n: LocalPipelineExecutor(  # noqa: E731
            pipeline, tasks=n, workers=min(workers, n), logging_dir=str(root / f"logs_{name}"), skip_completed=False)
        executors = {
            "filter": run("filter", [
                JsonlReader(str(root / "input")),
                # deduplicate=False: trafilatura would drop paragraphs it saw twice before *in the same process*,
                # so a page's text would depend on which task read it; dedup is MinHash's job below
                Trafilatura(favour_precision=True, deduplicate=False, timeout=10.0),
                ScriptLanguage(exclusion_writer=excl("language")),
                EnglishGopherRepetition(language=words, exclusion_writer=excl("gopher_repetition")),
                EnglishGopherQuality(language=words, exclusion_writer=excl("gopher_quality")),
                EnglishC4Quality(language=words, exclusion_writer=excl("c4_quality")),
                JsonlWriter(str(root / "filtered"), compression=None)], tasks),
            "minhash_signatures": run("sig", [JsonlReader(str(root / "filtered")),
                                              MinhashDedupSignature(str(root / "sigs"), config=minhash, language=words)], tasks),
            "minhash_buckets": run("buckets", [MinhashDedupBuckets(str(root / "sigs"), str(root / "buckets"), config=minhash)],
                                   minhash.num_buckets),
            "minhash_clusters": run("clusters", [MinhashDedupCluster(str(root / "buckets"), str(root / "remove_ids"), config=minhash)], 1),
            "minhash_filter": run("dedup", [JsonlReader(str(root / "filtered")),
                                            MinhashDedupFilter(str(root / "remove_ids"), exclusion_writer=excl("minhash")),
                                            JsonlWriter(str(root / "output"), compression=None)], tasks),
        }
        seconds, step_seconds = {}, {}
        for name, ex in executors.items():
            t0 = time.perf_counter()
            ex.run()
            seconds[name] = time.perf_counter() - t0
        for logs in sorted(root.glob("logs_*")):
            step_seconds.update(_step_seconds(logs))
        kept_ids = _removed_ids(root / "output")
        dropped = {s: _removed_ids(removed[s]) for s in DATATROVE_STAGES[1:]}
    ids = np.array([p.id for p in crawl.pages])
    after_extract = kept_ids | set().union(*dropped.values())  # the extractor drops empty pages without a record
    keeps, keep = {}, np.isin(ids, list(after_extract))
    keeps["extract"] = keep.copy()
    for s in DATATROVE_STAGES[1:]:
        keep &= ~np.isin(ids, list(dropped[s]))
        keeps[s] = keep.copy()
    if not np.array_equal(keep, np.isin(ids, list(kept_ids))):
        raise RuntimeError("datatrove's output is not what its exclusion records imply; inspect the workdir's logs")
    return keeps, {"seconds": seconds, "step_seconds": step_seconds}


_STEP_OF = {"Trafilatura": "extract", "language by script": "language", "Gopher Repetition": "gopher_repetition",
            "Gopher Quality": "gopher_quality", "C4 Quality": "c4_quality", "MinHash": "minhash"}


def datatrove_study(n_pages: int = 2000, seed: int = 0, tasks: int = 4, workers: int = 2,
                    cfg: PipelineConfig = PipelineConfig()) -> dict:
    """Both pipelines on one crawl, scored by `score_kept` after every stage and timed.

    Returns {"rows": one per pipeline and stage (kept, precision, recall, redundant, seconds in the stage:
    wall clock for the teaching pipeline, datatrove's own per-step time summed over its tasks), "summary": per
    pipeline the final scores, wall-clock seconds of the whole run and pages per second, "by_language": recall
    of good groups per language}."""
    from minillm.data.crawl import generate_crawl

    crawl = generate_crawl(n_pages, seed=seed)
    t0 = time.perf_counter()
    teach_keeps, teach_seconds = teaching_pipeline(crawl, cfg)
    teach_wall = time.perf_counter() - t0
    t0 = time.perf_counter()
    dt_keeps, timing = datatrove_pipeline(crawl, tasks=tasks, workers=workers)
    dt_wall = time.perf_counter() - t0
    dt_seconds = dict.fromkeys(DATATROVE_STAGES, 0.0)
    for step, sec in timing["step_seconds"].items():
        for key, stage in _STEP_OF.items():
            if key in step:
                dt_seconds[stage] += sec
    rows = []
    for pipeline, keeps, seconds in (("teaching", teach_keeps, teach_seconds), ("datatrove", dt_keeps, dt_seconds)):
        for stage, keep in keeps.items():
            rows.append({"pipeline": pipeline, "stage": stage, **score_kept(keep, crawl), "seconds": seconds[stage]})
    language = crawl.labels()["language"]
    good = good_pages(crawl)
    summary, by_language = {"pages": n_pages, "seed": seed, "tasks": tasks, "workers": workers}, []
    for pipeline, keeps, wall in (("teaching", teach_keeps, teach_wall), ("datatrove", dt_keeps, dt_wall)):
        final = list(keeps.values())[-1]
        summary[pipeline] = {**score_kept(final, crawl), "seconds": wall, "pages_per_s": n_pages / wall}
        for lang in ("en", "zh"):  # a page and its copies share a language
            sub = score_kept(final & (language == lang), crawl)
            n_good = int((good & (language == lang)).sum())
            by_language.append({"pipeline": pipeline, "language": lang, "good": n_good, "kept": sub["kept"],
                                "precision": sub["precision"], "recall": sub["recall"] * sub["good"] / n_good})
    summary["datatrove"]["executor_seconds"] = timing["seconds"]
    return {"rows": rows, "summary": summary, "by_language": by_language}


def comparison_rows(summary: dict) -> list[dict]:
    """One row per pipeline from a `datatrove_study` summary (live or shipped): the final kept set and its time."""
    return [{"pipeline": p, **{k: summary[p][k] for k in ("kept", "precision", "recall", "redundant",
                                                       "seconds", "pages_per_s")}}
            for p in ("teaching", "datatrove")]


def shipped_datatrove() -> dict:
    """The newest shipped datatrove study (bench/results/data_experiments.jsonl): {"summary", "rows", ...}."""
    from book import results

    records = results.latest("data_experiments.jsonl", key="experiment")
    if "datatrove" not in records:
        raise RuntimeError("bench/results/data_experiments.jsonl has no datatrove record: run "
                           "python bench/data_experiments.py --only datatrove")
    return records["datatrove"]
