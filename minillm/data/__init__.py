"""Data pipeline (Survey §4.1): where text comes from, how it is cleaned, tokenized, mixed and batched.

    synthetic/        generators with exact log-probabilities (known entropy floors)
    crawl/            a synthetic dirty web crawl with ground truth for every page
    clean/            extraction, language id, Gopher/C4 rules, keywords, perplexity LM, quality classifier
    dedup/            exact, line-level, MinHash-LSH near-duplicate, 13-gram decontamination
    pii.py            privacy reduction: e-mails, phones, IPs, Chinese IDs, credit cards
    pipeline.py       every cleaning stage on a crawl, scored against the truth
    tokenizer.py, bpe.py, bpe_train.py, tokenizer_study.py   tokenizers and their comparison
    experiments.py, mixture.py   training experiments on data: duplicates, raw vs clean, mixtures
    shards.py, loader.py, sources.py, prepare.py   token files, batches, real-corpus loaders

Nothing is imported here: `from minillm.data.crawl import generate_crawl` loads only what it needs.
"""
