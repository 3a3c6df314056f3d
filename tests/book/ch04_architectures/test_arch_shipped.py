"""Chapter 04's shipped records and mask figure (book.ch04_architectures.plots_attention)."""
import matplotlib
import numpy as np
import pytest

from book.ch04_architectures import plots_attention as study_plots_b

matplotlib.use("Agg")
STUDIES = ("stability", "activation", "positions", "attention", "kv_heads", "prefix", "architectures", "moe")


def test_shipped_arch_studies_has_every_study_with_provenance():
    got = study_plots_b.shipped_arch_studies()
    assert set(STUDIES) <= got.keys()
    for name in STUDIES:
        assert got[name]["rows"] and got[name]["provenance"]["command"].startswith("python bench/arch_studies.py")


def test_plot_masks_draws_the_three_masks():
    fig = study_plots_b.plot_masks(seq_len=6, prefix_len=2)
    causal, prefix, encdec = (ax.images[0].get_array() for ax in fig.axes)
    assert np.array_equal(np.asarray(causal, bool), np.tril(np.ones((6, 6), bool)))
    assert np.asarray(prefix, bool)[0, 1]            # a prefix token sees the next prefix token
    assert not np.asarray(prefix, bool)[2, 3]        # a suffix token does not see the future
    assert np.asarray(encdec).shape == (4, 6)       # 4 decoder queries: 4 self keys + 2 encoder keys
    with pytest.raises(ValueError, match="prefix_len"):
        study_plots_b.plot_masks(4, 4)
