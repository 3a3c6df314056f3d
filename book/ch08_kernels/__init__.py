"""Chapter 08, Appendix: fused Triton kernels (Survey §4.3, efficiency): the code of chapters/08_kernels.ipynb.

In reading order:

    studies.py   a roofline model of the ops the kernels replace; measured checks
    plots.py     figures, tables and the roofline widget; shipped GPU results
"""
