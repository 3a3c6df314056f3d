"""Chapter 00, Welcome: the whole loop in one notebook (Survey §1–§4 overview): the code of chapters/00_welcome.ipynb.

In reading order:

    studies_landscape.py  the map of the field as data: a timeline of landmark models, public resources, the route of this book
    plots.py              the timeline and pipeline figures; the temperature / top-k / top-p sampling widget
"""
