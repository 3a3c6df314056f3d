"""Chapter 03, Data collection and preparation (Survey §4.1): the code of chapters/03_data.ipynb.

In reading order:

    plots_cleaning.py       the cleaning stages scored against the crawl, the perplexity-filter widget
    plots_dedup.py          de-duplication figures and the LSH S-curve widget
    studies_datatrove.py    the same crawl through datatrove (FineWeb's filters, MinHash dedup, LocalPipelineExecutor)
                            beside the teaching pipeline, both scored on the ground truth and timed
    studies_tokenizers.py   BPE, WordPiece, Unigram and characters compared in English and Chinese; NFKC
    studies_experiments.py  training on data choices: duplicates, raw vs clean, the cleaned crawl, domain mixtures
    studies_crawl.py        the cleaned crawl against the raw one, trained and scored
    studies_mixture.py      the mixture sweep behind the data mixing law
    plots_experiments.py    their figures and the mixing-law widget
"""
