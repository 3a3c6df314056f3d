"""Chapter 08, section 7: peak live bytes (studies_flash_memory) on cases counted by hand, the attention memory
study against its counted model, and the section's figures and checks (plots_flash)."""
from __future__ import annotations

import matplotlib
import pytest
import torch

matplotlib.use("Agg")  # headless: tests must never open a window

from book.ch08_kernels import plots_flash as pf  # noqa: E402
from book.ch08_kernels import studies_flash as sf  # noqa: E402
from book.ch08_kernels import studies_flash_memory as fm  # noqa: E402


def test_peak_live_bytes_counts_what_is_alive_together():
    assert fm.peak_live_bytes(lambda: torch.ones(1000) + 1) == 8000  # the ones and the sum, fp32

    def one_after_another():
        a = torch.ones(1000)
        del a  # freed before the next allocation
        return torch.ones(1000)

    assert fm.peak_live_bytes(one_after_another) == 4000
    assert fm.peak_live_bytes(lambda: [torch.ones(1000, dtype=torch.float64) for _ in range(3)]) == 24000
    x = torch.ones(100, 10)
    assert fm.peak_live_bytes(lambda: (x.T, x[3:], x.view(-1), x.add_(1))) == 0  # views and in-place: nothing new
    assert fm.peak_live_bytes(lambda: None) == 0


def test_attention_memory_measured_matches_the_count_and_scales():
    threads = torch.get_num_threads()
    rows = fm.measure_attention_memory((128, 256, 512), batch=1, heads=2, head_dim=16, block=32)
    assert torch.get_num_threads() == threads  # the one-thread setting is restored
    for r in rows:
        assert r["materialised MB"] == pytest.approx(r["materialised model MB"], rel=0.02), r
        assert r["tiled MB"] == pytest.approx(r["tiled model MB"], rel=0.05), r
        assert r["scores MB"] == 2 * r["T"] ** 2 * 4 / 1e6 and r["max diff"] < 1e-5
        assert r["tiled MB"] < r["scores MB"] < r["materialised MB"]
    assert pf.growth_exponent(rows, "materialised MB") == pytest.approx(2, abs=0.05)
    assert 0.6 < pf.growth_exponent(rows, "tiled MB") < 1.05


@pytest.mark.parametrize("kwargs, match", [(dict(lengths=()), "lengths is empty"),
                                           (dict(lengths=(64, 0)), r"lengths\[1\]=0"),
                                           (dict(lengths=(64,), block=True), "block=True")])
def test_measure_rejects_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        fm.measure_attention_memory(**kwargs)


def test_growth_exponent_by_hand():
    rows = [{"T": 100, "x": 3.0}, {"T": 200, "x": 12.0}]
    assert pf.growth_exponent(rows, "x") == pytest.approx(2.0)
    with pytest.raises(ValueError, match="at least two rows"):
        pf.growth_exponent(rows[:1], "x")


def test_roofline_with_attention_adds_diamonds_to_section_1s_figure():
    fig = pf.plot_attention_roofline("H100 SXM", (1024, 4096))
    ax = fig.axes[0]
    points = [c for c in ax.collections if len(c.get_offsets())]
    assert len(points) == 2 * len(pf.kplots.rl.OPS) + len(pf.ATTN_STYLE)  # section 1's ops, then attention
    by_label = {c.get_label(): c.get_offsets() for c in points}
    mat = by_label[pf.ATTN_STYLE["materialised"][2]]
    cached = by_label[pf.ATTN_STYLE["flash_cached"][2]]
    assert len(mat) == len(cached) == 2
    want = sf.attention_cost("materialised", 4096, **{k: v for k, v in sf.LLAMA_8B_ATTENTION.items()
                                                      if k != "seq_len"}).intensity
    assert mat[1][0] == pytest.approx(want)
    assert cached[1][1] == pytest.approx(989e12)  # compute-bound at 4096: on the flat roof
    assert all(y < 989e12 / 2 for _, y in mat)
    with pytest.raises(ValueError, match="lengths is empty"):
        pf.plot_attention_roofline(lengths=())


def test_memory_plot_draws_measured_and_counted():
    rows = [{"T": t, "materialised MB": 6 * t * t, "tiled MB": 4 * t, "materialised model MB": 6 * t * t,
             "tiled model MB": 4 * t, "scores MB": t * t} for t in (64, 128)]
    ax = pf.plot_attention_memory(rows).axes[0]
    assert ax.get_xscale() == ax.get_yscale() == "log" and len(ax.lines) == 5
    with pytest.raises(ValueError, match="no rows to plot"):
        pf.plot_attention_memory([])


def test_sdpa_reference_puts_the_queries_at_the_end_of_the_keys():
    g = torch.Generator().manual_seed(0)
    q, k, v = torch.randn(1, 1, 1, 8, generator=g), torch.randn(1, 1, 5, 8, generator=g), torch.randn(1, 1, 5, 8,
                                                                                                      generator=g)
    want = torch.softmax(q @ k.transpose(-1, -2) / 8 ** 0.5, -1) @ v  # one query sees all five keys
    torch.testing.assert_close(pf.sdpa_reference(True)(q, k, v), want)


def test_check_flash_reference_rows():
    rows = pf.check_flash(impls=("reference",), dtypes=(torch.float32,))
    assert [r["shape"] for r in rows] == [s[:5] for s in pf.CHECK_SHAPES]
    assert all(r["forward"] < 1e-5 and r["backward"] < 1e-5 for r in rows), rows
    with pytest.raises(ValueError, match="unknown impl"):
        pf.check_flash(impls=("cuda",))


def test_check_flash_sees_a_broken_implementation(monkeypatch):
    """The check's comparison is not vacuous: the reference with its accumulator left unrescaled fails it."""
    from minillm.kernels import flash_reference

    original = flash_reference.flash_attention_reference

    def broken(q, k, v, causal=True, scale=None, block_m=64, block_n=64):
        return original(q, k, v, causal, scale, block_m, block_n, _bug="no_rescale")

    monkeypatch.setattr(flash_reference, "flash_attention_reference", broken)
    rows = pf.check_flash(impls=("reference",), dtypes=(torch.float32,))
    assert max(r["forward"] for r in rows) > 1e-2


def test_check_flash_triton_in_the_interpreter():
    pytest.importorskip("triton")
    rows = pf.check_flash(impls=("triton",), dtypes=(torch.float32,),
                          device="cuda" if torch.cuda.is_available() else "cpu")
    assert len(rows) == len(pf.CHECK_SHAPES)
    assert all(r["forward"] < 1e-5 and r["backward"] < 1e-5 for r in rows), rows
