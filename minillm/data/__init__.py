"""Data (Survey §4.1): where text comes from, how it is cleaned, tokenized, mixed and batched.

In reading order:

    tokenizer.py      CharTokenizer, BPETokenizer (HF tokenizers), load_tokenizer
    bpe_train.py      the teaching byte-level BPE trainer (train_bpe -> vocab, merges); bpe.py its ByteBPE codec
    vocab.py          add_special_tokens: new special tokens for a trained tokenizer, old ids unchanged
    special_tokens.py reserved tokens (<|endoftext|>, chat roles) and how tokenizers keep them whole
    shards.py         the token-file format (header + uint16/uint32 ids), checked on read
    loader.py         batches from token arrays: get_batch, RandomLoader, SequentialLoader, DataSplits
    sources.py        real text: local .txt / .jsonl files and folders, Hugging Face datasets (when online)
    prepare.py        corpus -> tokenizer + train/val shards (what `python -m minillm prepare` runs)
    mixture.py        mixing domains at set weights, and fitting the data mixing law
    synthetic/        generators with exact log-probabilities (known entropy floors): stories, facts, arithmetic
    tasks/            task suites with exact answers (arithmetic with working, in-context rules, instructions)
    crawl/            a synthetic dirty web crawl with ground truth for every page
    clean/            extraction, language id, Gopher/C4 rules, keywords, perplexity LM, quality classifier
    dedup/            exact, line-level, MinHash-LSH near-duplicate, 13-gram decontamination
    pii.py            privacy reduction: e-mails, phones, IPs, Chinese IDs, credit cards
    curation.py       every cleaning stage on a crawl, scored against the crawl's truth

Only the tokenizer and loading path is imported here (the `prepare` function is `minillm.prepare`: here the name
is the module); the subpackages (synthetic, tasks, crawl, clean, dedup)
and pii / curation / mixture are imported by name (`from minillm.data.crawl import generate_crawl`), so
`import minillm` stays quick.
"""
from minillm.data.bpe import ByteBPE
from minillm.data.bpe_train import train_bpe
from minillm.data.loader import DataSplits, RandomLoader, SequentialLoader, get_batch
from minillm.data.prepare import PreparedData
from minillm.data.shards import read_header, read_shard, write_shard
from minillm.data.sources import read_jsonl, read_text_files
from minillm.data.tokenizer import BPETokenizer, CharTokenizer, Tokenizer, load_tokenizer
from minillm.data.vocab import add_special_tokens

__all__ = ["add_special_tokens", "ByteBPE", "train_bpe", "DataSplits", "RandomLoader", "SequentialLoader", "get_batch", "PreparedData",
           "read_header", "read_shard", "write_shard", "read_jsonl", "read_text_files", "BPETokenizer",
           "CharTokenizer", "Tokenizer", "load_tokenizer"]
