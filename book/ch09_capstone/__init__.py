"""Chapter 09, Capstone: a real model on real text, from tokenizer to a poet that follows instructions (Survey §2.1,
§4.1-§4.3, §5.1-§5.2, §6-§7): the code of chapters/09_capstone.ipynb.

In reading order:

    studies_corpus.py     the shipped corpora (Shakespeare, 全唐詩) split once, the byte-level BPE over both
    studies_poems.py      Tang poem forms from shape, instruction pairs from metadata, the form-adherence reward
    studies_tokenizer.py  BPE vocabulary sizes vs char per language, the training mixture, Python vs Rust BPE
    plots_tokenizer.py    their figure and tables
    studies_pretrain.py   the capstone data, the modern and GPT-2 recipes through minillm.Trainer, exact resume
    studies_sizing.py     the IsoFLOP sweep on this corpus, the allocation and the predicted loss
    plots_pretrain.py     IsoFLOP valleys, loss against wall-clock time, bits per byte
    plots_race.py         the Shakespeare race record (bench/shakespeare_race.py): nanoGPT's recipe vs ours
    studies_poet.py       SFT on poem pairs with the response-only loss; form adherence before and after
    studies_grpo.py       GRPO on the form reward with a KL anchor; the reward-hacking run
    plots_poet.py         adherence bars, SFT and GRPO curves, samples tables
    studies_use.py        KV-cache speed, export to a Hugging Face Llama folder, greedy equality in transformers
    plots_use.py          the sampling widget (free text or poet; temperature, top-p)
"""
