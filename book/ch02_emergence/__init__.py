"""Chapter 02, Emergent abilities (Survey §2.1; Schaeffer et al. 2023): the code of chapters/02_emergence.ipynb.

In reading order:

    studies.py    the size sweep (ModelZoo: train once, evaluate many) and its studies: metrics, shots, CoT, instructions
    studies_zoo.py  sharing the sweep's trained models between processes
    plots.py      figures and the task × metric widget
"""
