"""book.ch00_welcome.studies_landscape: the tables behind chapter 00's map of the field are consistent and correctly ordered."""
import dataclasses
import re

import pytest

from book.ch00_welcome import studies_landscape as landscape
from book.ch00_welcome.studies_landscape import ModelRow, Resource


def test_timeline_is_sorted_by_date_and_complete():
    rows = landscape.model_timeline()
    dates = [(r["year"], r["month"]) for r in rows]
    assert dates == sorted(dates)
    assert [r["date"] for r in rows] == sorted(r["date"] for r in rows)
    names = {r["name"] for r in rows}
    for expected in ("GPT-1", "BERT", "GPT-2", "T5", "GPT-3", "Codex", "Gopher", "InstructGPT", "Chinchilla",
                     "PaLM", "OPT", "BLOOM", "ChatGPT", "LLaMA", "GPT-4", "Llama 2", "Mistral 7B",
                     "Mixtral 8x7B", "DeepSeek-V3"):
        assert expected in names
    assert len(names) == len(rows), "a model appears twice"


def test_params_positive_or_undisclosed_and_sources_cited():
    for r in landscape.model_timeline():
        assert r["params"] is None or r["params"] > 0, r["name"]
        assert r["source"].strip(), r["name"]
        if r["active_params"] is not None:
            assert r["arch"] == "moe-decoder" and r["active_params"] < r["params"], r["name"]
    undisclosed = {r["name"] for r in landscape.model_timeline() if r["params"] is None}
    assert undisclosed == {"ChatGPT", "GPT-4"}


def test_well_known_sizes_and_dates():
    by_name = {r["name"]: r for r in landscape.model_timeline()}
    assert by_name["GPT-3"]["params"] == 175e9 and (by_name["GPT-3"]["year"], by_name["GPT-3"]["month"]) == (2020, 5)
    assert by_name["Chinchilla"]["params"] == 70e9
    assert by_name["PaLM"]["params"] == 540e9
    assert by_name["DeepSeek-V3"]["params"] == 671e9 and by_name["DeepSeek-V3"]["active_params"] == 37e9
    assert (by_name["ChatGPT"]["year"], by_name["ChatGPT"]["month"]) == (2022, 11)
    # Chinchilla: fewer parameters than Gopher, the compute-optimal lesson of §2.1
    assert by_name["Chinchilla"]["params"] < by_name["Gopher"]["params"]


def test_gpt_series_order():
    series = landscape.gpt_series()
    assert [r["name"] for r in series] == ["GPT-1", "GPT-2", "GPT-3", "Codex", "InstructGPT", "ChatGPT", "GPT-4"]
    dates = [r["date"] for r in series]
    assert dates == sorted(dates) and len(set(dates)) == len(dates)  # strictly increasing
    assert all(r["org"] == "OpenAI" for r in series)
    sizes = [r["params"] for r in series[:3]]
    assert sizes[0] < sizes[1] < sizes[2]  # 117M < 1.5B < 175B


def test_open_weights_filter():
    open_rows = landscape.model_timeline(open_weights=True)
    closed = landscape.model_timeline(open_weights=False)
    assert open_rows and closed and len(open_rows) + len(closed) == len(landscape.model_timeline())
    assert "LLaMA" in {r["name"] for r in open_rows} and "GPT-3" in {r["name"] for r in closed}
    with pytest.raises(ValueError, match="open_weights must be None, True or False"):
        landscape.model_timeline(open_weights="yes")


def test_returned_dicts_are_copies():
    rows = landscape.model_timeline()
    rows[0]["name"] = "changed"
    assert landscape.model_timeline()[0]["name"] == "GPT-1"


def test_resources_by_kind():
    corpora = {r["name"] for r in landscape.public_resources("corpus")}
    assert {"CommonCrawl", "C4", "The Pile", "RedPajama", "ROOTS", "Wikipedia", "BooksCorpus"} <= corpora
    libs = {r["name"] for r in landscape.public_resources("library")}
    assert {"Hugging Face Transformers", "DeepSpeed", "Megatron-LM", "JAX", "Colossal-AI", "FastMoE", "vLLM",
            "PyTorch FSDP"} <= libs
    assert landscape.public_resources("checkpoint")
    everything = landscape.public_resources()
    assert len(everything) == sum(len(landscape.public_resources(k)) for k in landscape.RESOURCE_KINDS)
    assert all(r["source"] for r in everything)
    with pytest.raises(ValueError, match="kind='model' is not valid; choose one of checkpoint, corpus, library"):
        landscape.public_resources("model")


SECTION = re.compile(r"^§\d+(\.\d+)*$")


def test_every_chapter_has_survey_sections_and_a_known_stage():
    chapters = landscape.book_chapters()
    assert [c["number"] for c in chapters] == list(range(8))
    stage_names = {s["name"] for s in landscape.pipeline_stages()} | {"overview"}
    for c in chapters:
        assert c["survey_sections"] and all(SECTION.match(s) for s in c["survey_sections"]), c
        assert c["stages"] and set(c["stages"]) <= stage_names, c
        assert re.fullmatch(rf"chapters/{c['number']:02d}_\w+\.ipynb", c["notebook"]), c


def test_pipeline_stages_in_order_with_chapters():
    stages = landscape.pipeline_stages()
    assert [s["name"] for s in stages] == ["pre-train", "instruction-tune", "align", "utilize & evaluate"]
    for s in stages:
        assert s["chapters"], f"no chapter teaches {s['name']}"
        assert all(SECTION.match(x) for x in s["survey_sections"])
    covered = {n for s in stages for n in s["chapters"]}
    assert covered == set(range(1, 8))  # every chapter after the welcome sits under some stage
    assert 6 in stages[1]["chapters"] and 6 in stages[2]["chapters"]


def test_rows_validate_themselves():
    good = dict(name="X", year=2020, month=1, params=1e9, org="o", open_weights=True, arch="decoder", source="s")
    ModelRow(**good)
    with pytest.raises(ValueError, match="params=-1 must be positive or None"):
        ModelRow(**{**good, "params": -1})
    with pytest.raises(ValueError, match="month=13 is not a valid date"):
        ModelRow(**{**good, "month": 13})
    with pytest.raises(ValueError, match="every row needs a source citation"):
        ModelRow(**{**good, "source": ""})
    with pytest.raises(ValueError, match="active_params must be in"):
        ModelRow(**{**good, "active_params": 2e9})
    with pytest.raises(ValueError, match="arch='rnn'"):
        ModelRow(**{**good, "arch": "rnn"})
    with pytest.raises(ValueError, match="kind='dataset'"):
        Resource("R", "dataset", "o", "d", "s")
    with pytest.raises(dataclasses.FrozenInstanceError):
        landscape.TIMELINE[0].params = 1.0  # the tables are constants
