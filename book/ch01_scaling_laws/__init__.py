"""Chapter 01, Scaling laws (Survey §2.1): the code of chapters/01_scaling_laws.ipynb.

In reading order:

    plots.py              the laws drawn, the shipped IsoFLOP sweep, the fits, the law-explorer widget
    studies.py            data far past 20 tokens/param (one model trained 5–320 tokens/param)
    studies_knowledge.py  knowledge capacity: bits of facts stored per parameter, across model sizes
    plots_studies.py      the figures of those two studies
"""
