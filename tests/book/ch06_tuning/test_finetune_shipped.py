"""Chapter 06's shipped records (bench/results/finetune_studies.jsonl) and the bench script that makes them: every
study of the script is shipped, and its record's "settings" (what book.results.recording() saw it train) are what
the code would train now at laptop size, so a changed plan fails here until the records are made again."""
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import matplotlib
import pytest

from book import results
from book.ch06_tuning import plots, plots_sft

matplotlib.use("Agg")
ROOT = Path(__file__).resolve().parents[3]
FIGURES = {"align": plots.plot_alignment, "kl_sweep": plots.plot_kl_sweep,
           "peft_comparison": plots.plot_peft_comparison, "quantization": plots.plot_quantization,
           "lora_rank_sweep": lambda rows: plots.LoRAWidget(rows).figure,
           "diversity": plots_sft.plot_diversity, "mixing": plots_sft.plot_mixing,
           "pretrain_mix": plots_sft.plot_pretrain_mix, "knowledge": plots_sft.plot_knowledge,
           "tuned_vs_untuned": plots_sft.plot_tuned_vs_untuned, "grpo_addition": plots.plot_grpo_addition}


def test_every_study_is_shipped_at_laptop_size_with_provenance_and_draws():
    import matplotlib.pyplot as plt

    got = plots.shipped_finetune_studies()
    assert set(FIGURES) <= got.keys()
    for name, draw in FIGURES.items():
        rec = got[name]
        assert rec["size"] == "laptop" and rec["rows"], name
        assert rec["provenance"]["command"].startswith("python bench/finetune_studies.py"), name
        plt.close(draw(rec["rows"]))


def test_shipped_alignment_judges_every_policy_against_the_sft_model():
    rows = {r["method"]: r for r in plots.shipped_finetune_studies()["align"]["rows"]}
    assert {"sft", "dpo", "grpo", "ppo"} <= rows.keys()
    assert rows["sft"]["kl"] == 0.0  # the reference is the SFT model itself
    for r in rows.values():  # the hidden reward is the sum of its components, greedy and sampled
        assert r["hidden"] == pytest.approx(r["correctness"] + r["style"] + r["harm"])
        assert r["hidden_sampled"] == pytest.approx(r["correctness_sampled"] + r["style_sampled"] + r["harm_sampled"])


def test_shipped_grpo_with_a_verifiable_reward_raises_held_out_exact_match():
    """The chapter's claim, on the shipped record: held-out exact match rises under GRPO by more than 3 standard
    errors, greedy and sampled, the reward on the training batches rises too, and answers keep their format."""
    from book.ch06_tuning.studies_noise import finetune_noise

    rows = plots.shipped_finetune_studies()["grpo_addition"]["rows"]
    noise = finetune_noise()["grpo_addition"]
    assert noise["z_greedy"] > 3 and noise["z_sampled"] > 3, noise
    assert noise["reward_last"] > noise["reward_first"] + 0.1, noise
    ev = [r for r in rows if r["kind"] == "eval"]
    assert ev[0]["step"] == 0 and ev[-1]["format_ok"] >= 0.95
    assert [r["step"] for r in rows if r["kind"] == "step"] == list(range(1, ev[-1]["step"] + 1))


def test_bench_script_appends_a_record_at_ci(tmp_path):
    out = tmp_path / "ft.jsonl"
    subprocess.run([sys.executable, "bench/finetune_studies.py", "--size", "ci", "--only", "pretrain_mix",
                    "--out", str(out)], cwd=ROOT, check=True, capture_output=True, timeout=300)
    (rec,) = [json.loads(line) for line in out.read_text().splitlines()]
    assert rec["study"] == "pretrain_mix" and rec["size"] == "ci" and len(rec["rows"]) == 3
    assert set(rec["summary"]) == {"0.0", "0.25", "0.5"}


def _bench():
    spec = importlib.util.spec_from_file_location("finetune_studies", ROOT / "bench" / "finetune_studies.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_every_study_of_the_bench_script_is_shipped_with_its_settings(assert_shipped_with_settings):
    """Records from before "settings" existed (2026-11-23) cannot say how they were made: they fail here, listed,
    until python bench/finetune_studies.py makes them again."""
    assert_shipped_with_settings(plots.shipped_finetune_studies(), list(_bench().studies("laptop")),
                                 "finetune_studies.py")


def _dry_alignment(monkeypatch) -> dict:
    """{"align": settings, "kl_sweep": settings} the bench script's table would record now at laptop size, with
    every training and evaluation step stubbed out (what is noted is decided before them): ~5-10 s."""
    import minillm.finetune.dpo as dpo
    import minillm.finetune.grpo as grpo
    import minillm.finetune.ppo as ppo
    import minillm.finetune.reward as reward
    import minillm.finetune.sft as sft
    from book.ch06_tuning import studies_align as sa

    monkeypatch.setattr(sft, "train_sft", lambda *a, **k: [{"loss": 0.0}])
    monkeypatch.setattr(reward, "train_reward_model", lambda *a, **k: [{"loss": 0.0}])
    monkeypatch.setattr(dpo, "train_dpo", lambda *a, **k: None)
    monkeypatch.setattr(grpo, "grpo_step", lambda *a, **k: None)
    monkeypatch.setattr(ppo, "ppo_step", lambda *a, **k: None)
    monkeypatch.setattr(sa, "reward_model_agreement", lambda *a, **k: 0.0)
    monkeypatch.setattr(sa, "evaluate_policy", lambda policy, setup, name, **kw: {"method": name, **kw})
    table = _bench().studies("laptop")  # one shared setup, as in the bench run: the first study records it
    out = {}
    for name in ("align", "kl_sweep"):
        with results.recording() as seen:
            table[name][0]()
        out[name] = seen
    return out


@pytest.mark.slow
def test_shipped_alignment_settings_are_what_the_bench_script_would_train_now(monkeypatch):
    got = plots.shipped_finetune_studies()
    for name, now in _dry_alignment(monkeypatch).items():
        assert any("method" in e for e in now), now  # the dry run did reach the RL / DPO phases
        recorded = got[name].get("settings")
        assert recorded is not None, f"{name}: the record has no settings (re-run bench/finetune_studies.py)"
        assert recorded == now, f"{name}: shipped settings differ from the current plan; re-run python " \
                                f"bench/finetune_studies.py --only {name}\nshipped: {recorded}\nnow:     {now}"


def _entries(settings: list, key: str) -> list:
    return [e[key] for e in settings if key in e]


def test_shipped_sft_peft_and_knowledge_settings_are_the_current_configs():
    """What each study notes of its config (studies_sft.sft_study_config, studies_peft.study_config,
    studies_knowledge's model sizes) and the runs it trained with it."""
    from book.ch06_tuning import studies_knowledge, studies_peft, studies_sft

    got = plots.shipped_finetune_studies()
    with results.recording() as now:
        sft_cfg = studies_sft.sft_study_config("laptop")
        peft_cfg = studies_peft.study_config("laptop")
        studies_knowledge._sizes("laptop")
    (sft_now,), (peft_now,), (kb_now,) = (_entries(now, k) for k in ("sft_study", "peft_study", "knowledge_base"))
    plan = {"diversity": ("sft_study", sft_now), "mixing": ("sft_study", sft_now),
            "pretrain_mix": ("sft_study", sft_now), "tuned_vs_untuned": ("sft_study", sft_now),
            "peft_comparison": ("peft_study", peft_now), "lora_rank_sweep": ("peft_study", peft_now),
            "knowledge": ("knowledge_base", kb_now)}
    stale = {}
    for name, (key, want) in plan.items():
        settings = got[name].get("settings")
        if settings is None or want not in _entries(settings, key):
            stale[name] = {"shipped": None if settings is None else _entries(settings, key), "now": want}
    assert not stale, f"shipped settings differ from the current configs (re-run python bench/finetune_studies.py " \
                      f"--only ...): {stale}"
    # the fine-tunes of the SFT studies train the config's run (fresh bases are "tokens" runs)
    for name in ("diversity", "mixing", "pretrain_mix"):
        tuned = [e for e in got[name]["settings"] if e.get("train") == "rows"]
        assert tuned, name
        for e in tuned:
            assert (e["steps"], e["lr"], e["batch_size"]) == (sft_cfg.run.steps, sft_cfg.run.lr,
                                                             sft_cfg.run.batch_size), (name, e)
    tuned = [e for e in got["peft_comparison"]["settings"] if e.get("train") == "rows"]
    assert tuned and all(e["steps"] == peft_cfg.run.steps for e in tuned), tuned


def test_shipped_quantization_settings_are_the_current_defaults_on_the_shared_base():
    """quantization_cost's defaults (bits, group sizes, windows), on the 40,000 held-out characters the bench script
    gives it, of the base that peft_comparison trained (the first study to need it records its run)."""
    import inspect

    from book.ch06_tuning.studies_peft import quantization_cost

    got = plots.shipped_finetune_studies()
    for name in ("quantization", "peft_comparison"):
        assert got[name].get("settings"), f"{name}: the record has no settings (re-run bench/finetune_studies.py)"
    (q,) = _entries(got["quantization"]["settings"], "quantization")
    defaults = {k: v.default for k, v in inspect.signature(quantization_cost).parameters.items()}
    assert (q["bits"], q["group_sizes"], q["max_windows"]) == \
        (list(defaults["bits"]), list(defaults["group_sizes"]), defaults["max_windows"]), q
    assert q["heldout_chars"] == 40_000, q
    (base,) = [e for e in got["peft_comparison"]["settings"] if e.get("train") == "tokens"]
    assert q["params"] == base["params"], (q, base)
