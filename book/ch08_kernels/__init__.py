"""Chapter 08, Appendix: fused Triton kernels (Survey §4.3, efficiency): the code of chapters/08_kernels.ipynb.

In reading order:

    studies.py               a roofline model of the ops the kernels replace; measured checks
    plots.py                 figures, tables and the roofline widget; shipped GPU results
    studies_flash.py         section 7, FlashAttention: bytes and FLOPs of attention with and without its
                             scores in memory; one query row's online softmax, tile by tile
    studies_flash_memory.py  section 7: peak memory of materialised vs tiled attention, measured on the CPU
    plots_flash.py           section 7: attention on the roofline, memory against T, the checks against SDPA
"""
