"""Numbers in the chapters' prose agree with the shipped records they quote (book/prose.py): every keyed number
rounds to its record's value, and every decimal or percentage of a "What to see" paragraph is keyed."""
from __future__ import annotations

import json

import nbformat
import pytest

from book import prose

CHAPTERS = prose.chapters()


@pytest.mark.parametrize("notebook", CHAPTERS, ids=lambda p: p.stem)
def test_every_quoted_number_matches_the_newest_record(notebook):
    bad = prose.check_notebook(notebook)
    assert not bad, "prose and shipped records disagree:\n" + "\n".join(bad)


@pytest.mark.parametrize("notebook", CHAPTERS, ids=lambda p: p.stem)
def test_what_to_see_numbers_carry_a_key(notebook):
    bad = prose.unkeyed(notebook)
    assert not bad, ("key these numbers to their record (<!--= FILE/STUDY/PATH -->, see book/prose.py) or mark "
                     "them <!--= none: why -->:\n" + "\n".join(bad))


def test_the_book_quotes_its_records():
    """Not vacuous: the chapters that show shipped runs key what they quote."""
    counts = {p.stem: len(prose.quotes(p)) for p in CHAPTERS}
    assert sum(counts.values()) >= 200, counts
    for stem in ("01_scaling_laws", "02_emergence", "04_architectures", "05_training", "06_tuning",
                 "07_utilization_eval"):
        assert counts[stem] >= 5, (stem, counts[stem])


# ---- the mechanism, on a scratch results directory ---------------------------------------------------------------

def _record(study, rows, date, **extra):
    return {"study": study, "rows": rows, **extra, "provenance": {"date": date}}


@pytest.fixture
def scratch(tmp_path, monkeypatch):
    """A results dir with one file of two records of one study (the newer one written first) and a notebook."""
    res = tmp_path / "results"
    res.mkdir()
    rows_new = [{"size": "S", "acc": 0.5834, "loss": 1.2}, {"size": "M", "acc": 0.7, "loss": 1.0}]
    rows_old = [{"size": "S", "acc": 0.1, "loss": 9.0}, {"size": "M", "acc": 0.2, "loss": 8.0}]
    lines = [_record("sweep", rows_new, "2026-12-02T00:00:00+00:00"),
             _record("sweep", rows_old, "2026-12-01T00:00:00+00:00")]
    (res / "demo.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines), encoding="utf-8")
    monkeypatch.setenv("MINILLM_RESULTS", str(res))

    def notebook(markdown: str):
        nb = nbformat.v4.new_notebook()
        nb.cells = [nbformat.v4.new_markdown_cell(markdown), nbformat.v4.new_code_cell("x = 1")]
        p = tmp_path / "nb.ipynb"
        nbformat.write(nb, p)
        return p

    return res, notebook


def test_keys_resolve_to_the_newest_record_by_date(scratch):
    assert prose.value("demo/sweep/rows[size=S].acc") == 0.5834  # the newer record, though written first
    assert prose.value("demo/sweep/rows.acc|max") == 0.7
    assert prose.value("demo/sweep/rows.loss|mean") == pytest.approx(1.1)
    assert prose.value("demo/sweep/rows[size=M].acc|pct") == pytest.approx(70)
    assert prose.value("demo/sweep/rows[1].loss") == 1.0
    assert prose.value("demo/-/rows|len") == 2
    assert prose.value("demo/sweep/rows[size=S].loss - demo/sweep/rows[size=M].loss") == pytest.approx(0.2)
    assert prose.value("demo/sweep/rows[size=M].acc / demo/sweep/rows[size=S].acc") == pytest.approx(0.7 / 0.5834)


@pytest.mark.parametrize("key, match", [
    ("demo/sweep/rows[size=XL].acc", "no row has size=XL"),
    ("demo/nope/rows", "no record of study 'nope'"),
    ("demo/sweep/rows.acc", "not a number"),
    ("demo/sweep/rows[size=S].speed", "no field 'speed'"),
    ("demo/sweep/rows.acc|median", "unknown op"),
])
def test_bad_keys_say_what_is_wrong(scratch, key, match):
    with pytest.raises(KeyError, match=match):
        prose.value(key)


def test_a_changed_record_fails_the_prose_check(scratch):
    res, notebook = scratch
    nb = notebook("*What to see:* accuracy reaches 0.58<!--= demo/sweep/rows[size=S].acc --> and "
                  "70%<!--= demo/sweep/rows[size=M].acc|pct -->, loss 1.2<!--= demo/sweep/rows[size=S].loss -->.")
    assert prose.check_notebook(nb) == [] and prose.unkeyed(nb) == []
    # a re-run appends a newer record that moves one quoted number: the prose check now fails, naming it
    newer = _record("sweep", [{"size": "S", "acc": 0.61, "loss": 1.2}, {"size": "M", "acc": 0.7, "loss": 1.0}],
                    "2026-12-03T00:00:00+00:00")
    with open(res / "demo.jsonl", "a", encoding="utf-8") as f:
        f.write(json.dumps(newer) + "\n")
    bad = prose.check_notebook(nb)
    assert len(bad) == 1 and "0.58" in bad[0] and "0.61" in bad[0]


def test_rounding_is_to_the_printed_precision(scratch):
    _, notebook = scratch
    wrong = notebook("acc 0.59<!--= demo/sweep/rows[size=S].acc --> and 0.583<!--= demo/sweep/rows[size=S].acc -->"
                     " and 0.6<!--= demo/sweep/rows[size=S].acc --> and 6e-1<!--= demo/sweep/rows[size=S].acc -->")
    bad = prose.check_notebook(wrong)
    assert len(bad) == 1 and "0.59" in bad[0]


def test_unkeyed_what_to_see_numbers_are_listed(scratch):
    _, notebook = scratch
    nb = notebook("Setup with lr 0.003 is not a claim.\n\n*What to see:* accuracy 0.58 and 45% with `x = 0.5`, "
                  "$p = 0.1$, the survey's 0.7<!--= none: survey Table 3 --> and 1.2<!--= demo/sweep/rows[size=S].loss -->.")
    found = [line.split(": ", 1)[1].split(" in ")[0] for line in prose.unkeyed(nb)]
    assert found == ["0.58", "45%"]


def test_cli_check_exit_status(scratch, capsys):
    _, notebook = scratch
    good = notebook("acc 0.58<!--= demo/sweep/rows[size=S].acc -->")
    assert prose.main(["check", str(good)]) == 0
    bad = notebook("acc 0.99<!--= demo/sweep/rows[size=S].acc -->")
    assert prose.main(["check", str(bad)]) == 1
    assert "0.99" in capsys.readouterr().out
