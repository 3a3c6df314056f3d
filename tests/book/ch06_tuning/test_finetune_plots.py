"""book.ch06_tuning.plots: every figure draws from study-shaped rows; widgets redraw and report numbers."""
import matplotlib
import pytest

matplotlib.use("Agg")

from book.ch06_tuning import plots  # noqa: E402

ALIGN = [{"method": m, "correctness": c, "style": 0.0, "harm": h, "hidden": c + h, "hidden_sampled": c + h - 0.1,
          "learned": lr, "learned_sampled": lr, "kl": kl, "beta": b}
         for m, c, h, lr, kl, b in (("sft", 0.8, -0.4, 0.1, 0.0, None), ("dpo", 0.6, -0.1, 0.5, 1.2, 0.1),
                                    ("grpo", 0.5, 0.0, 0.9, 2.0, 0.04))]
KL = [{"beta": b, "hidden_sampled": h, "learned_sampled": lr, "kl": kl}
      for b, h, lr, kl in ((None, 0.2, 0.0, 0.0), (0.0, 0.1, 1.5, 6.0), (0.04, 0.4, 0.9, 2.0), (0.2, 0.3, 0.4, 0.5))]
PEFT = [{"method": m, "trainable": n, "accuracy": a, "accuracy_seen": s, "train_memory_bytes": 16 * n}
        for m, n, a, s in (("full", 800_000, 0.27, 0.97), ("lora", 8_192, 0.34, 0.69), ("prompt", 1_024, 0.0, 0.2))]
LORA = [{"rank": r, "alpha": a, "trainable": 2048 * r, "accuracy_seen": min(1.0, 0.1 * r + a / 100)}
        for r in (1, 2, 4, 8) for a in (4.0, 16.0)]
QUANT = [{"bits": b, "group_size": g, "bytes": n, "delta_ppl": d}
         for b, g, n, d in ((32, None, 4_000_000, 0.0), (8, None, 1_000_000, 0.001), (4, 32, 600_000, 0.02))]


def test_figures_draw_from_rows():
    import matplotlib.pyplot as plt

    for fn, rows, n_axes in ((plots.plot_alignment, ALIGN, 2), (plots.plot_kl_sweep, KL, 2),
                             (plots.plot_peft_comparison, PEFT, 1), (plots.plot_quantization, QUANT, 1)):
        fig = fn(rows)
        assert len(fig.axes) == n_axes, fn.__name__
        plt.close(fig)


def test_plots_name_the_missing_keys():
    with pytest.raises(ValueError, match="correctness"):
        plots.plot_alignment([{"method": "sft"}])
    with pytest.raises(ValueError, match="no rows"):
        plots.plot_kl_sweep([])
    with pytest.raises(ValueError, match="no RL rows"):
        plots.plot_kl_sweep(KL[:1])


def test_lora_widget_moves_with_its_sliders():
    w = plots.LoRAWidget(LORA, live_rows=[r for r in LORA if r["alpha"] == 16.0])
    w.controls["rank"].value = 8
    w.controls["alpha"].value = 4.0
    assert w.result == {"rank": 8, "alpha": 4.0, "scale": 0.5, "accuracy": round(0.8 + 0.04, 3),
                        "trainable": 2048 * 8}
    assert "r=8" in w.summary.value


def test_kl_widget_reports_the_chosen_beta():
    w = plots.KLWidget(KL)
    w.controls["beta"].value = 0.0
    assert w.result == {"beta": 0.0, "hidden": 0.1, "learned": 1.5, "kl": 6.0}
    w.controls["beta"].value = 0.2
    assert w.result["kl"] == 0.5


def test_sft_study_figures_draw_from_study_rows():
    import matplotlib.pyplot as plt

    from book.ch06_tuning import plots_sft

    div = [{"n_templates": t, "n_examples": n, "heldout_accuracy": 0.1 * t, "seen_accuracy": n / 256}
           for t in (1, 6) for n in (64, 256)]
    mix = [{"mix": {"instructions": 1.0}, "accuracy": {"instructions": 0.9, "addition": 0.0}},
           {"mix": {"instructions": 0.5, "addition": 0.5}, "accuracy": {"instructions": 0.5, "addition": 0.1}}]
    pre = [{"pretrain_share": s, "forgetting": f, "accuracy": 0.2, "pretrain_loss_base": 0.47}
           for s, f in ((0.0, 3.3), (0.5, 0.03))]
    kno = [{"sft_on": a, "base_recall": 1.0, "heldout_known_accuracy": k, "unknown_hallucination_rate": 1.0,
            "train_accuracy": 1.0} for a, k in (("known", 0.7), ("unknown", 0.4))]
    tvu = [{"model": m, "params": p, "tuned": t, "prompt_format": f, "split": s, "accuracy": 0.5}
           for m, p, t, f in (("small", 8e5, True, "chat"), ("big", 1.8e6, False, "plain"))
           for s in ("heldout", "train")]
    for fn, rows in ((plots_sft.plot_diversity, div), (plots_sft.plot_mixing, mix),
                     (plots_sft.plot_pretrain_mix, pre), (plots_sft.plot_knowledge, kno),
                     (plots_sft.plot_tuned_vs_untuned, tvu)):
        fig = fn(rows)
        assert fig.axes, fn.__name__
        plt.close(fig)
    fig = plots_sft.plot_diversity(div)
    texts = [t.get_text() for t in fig.axes[0].texts]
    assert texts == ["0.10", "0.10", "0.60", "0.60"]  # held-out cells, rows = phrasings per family
    plt.close(fig)
    with pytest.raises(ValueError, match="heldout_known_accuracy"):
        plots_sft.plot_knowledge([{"sft_on": "known"}])
