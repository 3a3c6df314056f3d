"""Data pipeline: tokenizers, synthetic corpora, shards, loaders, cleaning (Survey §4.1)."""
