"""Chapter 07, Utilization and evaluation (Survey §4.2.4, §6, §7): the code of chapters/07_utilization_eval.ipynb.

In reading order:

    studies.py                the chapter's models; decoding judged by the story grammar; prompting; perplexity vs accuracy
    studies_tools.py          the tool-use study: a calculator called mid-generation, with and without
    studies_contamination.py  a leaked benchmark: a clean and a contaminated model, and the n-gram check
    plots.py                  figures and the decoding widget
"""
