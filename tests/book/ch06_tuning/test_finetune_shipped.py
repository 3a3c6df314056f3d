"""Chapter 06's shipped records (bench/results/finetune_studies.jsonl) and the bench script that makes them."""
import json
import subprocess
import sys
from pathlib import Path

import matplotlib
import pytest

from book.ch06_tuning import plots, plots_sft

matplotlib.use("Agg")
ROOT = Path(__file__).resolve().parents[3]
FIGURES = {"align": plots.plot_alignment, "kl_sweep": plots.plot_kl_sweep,
           "peft_comparison": plots.plot_peft_comparison, "quantization": plots.plot_quantization,
           "lora_rank_sweep": lambda rows: plots.LoRAWidget(rows).figure,
           "diversity": plots_sft.plot_diversity, "mixing": plots_sft.plot_mixing,
           "pretrain_mix": plots_sft.plot_pretrain_mix, "knowledge": plots_sft.plot_knowledge,
           "tuned_vs_untuned": plots_sft.plot_tuned_vs_untuned}


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


def test_bench_script_appends_a_record_at_ci(tmp_path):
    out = tmp_path / "ft.jsonl"
    subprocess.run([sys.executable, "bench/finetune_studies.py", "--size", "ci", "--only", "pretrain_mix",
                    "--out", str(out)], cwd=ROOT, check=True, capture_output=True, timeout=300)
    (rec,) = [json.loads(line) for line in out.read_text().splitlines()]
    assert rec["study"] == "pretrain_mix" and rec["size"] == "ci" and len(rec["rows"]) == 3
    assert set(rec["summary"]) == {"0.0", "0.25", "0.5"}
