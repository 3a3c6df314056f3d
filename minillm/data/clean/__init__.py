"""Cleaning a web crawl: text extraction and quality filtering (Survey §4.1.2, "Data Preprocessing").

The survey sorts quality filters into two families; each has a module here:

    extract.py     before any filter: HTML -> main text (drop nav, ads, scripts, cookie banners)
    langid.py      heuristic, language-based: script of the letters (script_of), and a character n-gram
                   naive-Bayes identifier (NgramLanguageID)
    heuristics.py  heuristic, statistic-based and keyword-based: Gopher and C4 rules in QualityRules
                   (rule_results, heuristic_filter), and a spam blocklist (keyword_filter)
    perplexity.py  heuristic, metric-based: a Kneser-Ney character n-gram LM; drop high-perplexity pages
    classifier.py  classifier-based: a fastText-like hashed n-gram logistic classifier (QualityClassifier)
    filter_metrics.py  precision / recall / F1 against ground truth, ROC AUC, aligned tables

De-duplication, privacy reduction (PII) and decontamination are the survey's other §4.1.2 steps; they
live in their own modules (minillm.data.dedup, minillm.data.pii). Every filter returns a FilterResult
(keep, reasons, scores), and "junk" (what a filter should drop) is the positive class in the metrics.
"""
from minillm.data.clean._common import FilterResult
from minillm.data.clean.classifier import QualityClassifier, hashed_features
from minillm.data.clean.extract import extract_paragraphs, extract_text
from minillm.data.clean.heuristics import (BLOCKLIST, RULE_NAMES, STOP_WORDS_EN, QualityRules, heuristic_filter, keyword_filter,
                         keyword_hits, rule_results, text_stats)
from minillm.data.clean.langid import SCRIPTS, NgramLanguageID, script_counts, script_language, script_of
from minillm.data.clean.filter_metrics import precision_recall, roc_auc, stage_table
from minillm.data.clean.perplexity import CharNgramLM, perplexity_filter, perplexity_threshold

__all__ = ["FilterResult", "QualityClassifier", "hashed_features", "extract_paragraphs", "extract_text",
           "BLOCKLIST", "RULE_NAMES", "STOP_WORDS_EN", "QualityRules", "heuristic_filter", "keyword_filter",
           "keyword_hits", "rule_results", "text_stats", "SCRIPTS", "NgramLanguageID", "script_counts",
           "script_language", "script_of", "precision_recall", "roc_auc", "stage_table", "CharNgramLM",
           "perplexity_filter", "perplexity_threshold"]
