"""Chapter 04, Architectures (Survey §4.2): the code of chapters/04_architectures.ipynb.

In reading order:

    plots_calculator.py   the architecture calculator widget (params, FLOPs, KV cache, memory)
    studies.py            normalisation × depth × learning rate, activations, position extrapolation, biases
    plots.py              their figures
    studies_attention.py  sliding windows; MHA / GQA / MQA cache and decode speed
    studies_arch.py       causal vs prefix vs encoder-decoder; prefix continuation; mixture of experts
    studies_objectives.py causal LM vs prefix LM vs T5 span corruption on the same data, probed alike; permutation
                          equivariance of attention without positions
    plots_objectives.py   the objectives figure; plots_norms.py: post-LN, pre-LN, sandwich, DeepNorm diagrams
    plots_attention.py    the figures of those two
    studies_sparse.py     sparse attention: pairs and kernel tiles against T; dense vs strided vs fixed on the small run
    plots_sparse.py       the sparse patterns as images and their cost against context length
"""
