"""book: the textbook's code. Every chapter notebook `chapters/NN_<stem>.ipynb` calls `book/chNN_<stem>/`.

The rule (the same one heads `minillm/__init__.py`):
- A module belongs in `minillm/` if someone could call it with their own data; in `book/` if it names a chapter,
  draws a figure, builds a widget, reads `bench/results` or fixes study sizes.
- `book` imports `minillm`; nothing in `minillm` imports `book`.
- A chapter's package imports `minillm` and `book.{runs,results,viz}` only, never another chapter: what two
  chapters share moves down into those three modules (or into `minillm` when it is reusable).
- Inside a chapter package: `studies[_<section>].py` return rows (lists of dicts) and `plots[_<section>].py` draw
  them; tests mirror the paths under `tests/book/`.

    runs.py     the one small-run recipe every study trains with (a tiny GPT on a synthetic corpus)
    results.py  the one reader (and writer) of shipped records in bench/results, found from the repository
    viz.py      shared plots and ipywidgets (slider panels, loss curves)
    labs.py     builds the student notebooks in labs/ from labs/solutions/ (`python -m book.labs build`)
    grading/    the labs' autograded checks (`grading.check("softmax", my_softmax)`)
    ch00_welcome/ ... ch08_kernels/   one package per chapter
"""
