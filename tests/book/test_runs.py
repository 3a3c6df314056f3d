"""book.runs: the one small-run recipe every study trains with (Run, train), and what two chapters share."""
import math

import numpy as np
import pytest
import torch

from minillm.config import TrainConfig
from minillm.data.loader import DataSplits
from minillm.data.synthetic import corpus
from minillm.data.tokenizer import CharTokenizer
from book.runs import SIZES, ArchRun, Run, Trained, check_run, size_label, train

TEXT = corpus("story", 40, 0).text()  # ~8k characters, one story per line
TINY = Run(n_layer=1, n_embd=16, n_head=2, block_size=16, batch_size=4, steps=6, eval_windows=4)


def _weights(model):
    return [p.detach().clone() for p in model.parameters()]


# ------------------------------------------------------------------------------------------- Run


@pytest.mark.parametrize("size", ["ci", "laptop", "gpu"])
def test_for_size_is_run_with_the_profiles_changes(size):
    run = Run.for_size(size)
    assert run == Run(**SIZES[size])
    assert Run.for_size(size, steps=700).steps == 700
    arch = ArchRun.for_size(size)  # the same recipe on the profile's amount of data
    assert {k: getattr(arch, k) for k in SIZES[size]} == SIZES[size]
    assert arch.n_docs == {"ci": 300, "laptop": 3000, "gpu": 100_000}[size]


def test_for_size_presets():
    ci = Run.for_size("ci")
    assert (ci.n_layer, ci.n_embd, ci.block_size, ci.steps, ci.warmup_steps) == (2, 32, 32, 60, 5)
    assert Run.for_size("gpu").device == "auto"
    assert ArchRun.for_size("laptop") == ArchRun()  # ArchRun's defaults are the laptop preset
    with pytest.raises(ValueError, match="size"):
        Run.for_size("huge")


def test_for_size_follows_minillm_size(monkeypatch):
    monkeypatch.setenv("MINILLM_SIZE", "ci")
    assert Run.for_size() == Run.for_size("ci") and check_run(None) == ArchRun.for_size("ci")


@pytest.mark.parametrize("kwargs, match", [
    (dict(n_layer=0), r"Run\.n_layer=0 must be a positive int"),
    (dict(steps=True), r"Run\.steps=True must be a positive int"),
    (dict(batch_size=2.0), r"Run\.batch_size=2\.0 must be a positive int"),
    (dict(n_embd=30, n_head=4), "divisible by n_head=4"),
    (dict(lr=0.0), "lr=0.0 must be a positive finite number"),
    (dict(lr=math.inf), "lr=inf must be a positive finite number"),
    (dict(seed=-1), "seed=-1 must be a non-negative int"),
    (dict(warmup=-1), "warmup=-1 must be a non-negative int"),
    (dict(warmup=500, steps=10), "warmup=500 exceeds steps=10"),
    (dict(warmup=1.5), r"warmup=1\.5 must be an int of steps, a share of steps in \(0, 1\), or None"),
    (dict(warmup="5"), "warmup='5' must be an int of steps"),
    (dict(device="tpu"), "device='tpu' is not valid; choose one of auto, cpu, cuda, mps"),
    (dict(model_fields={"n_layer": 3}), r"model_fields has \['n_layer'\]: give ModelConfig fields other than"),
    (dict(model_fields={"positon": "rope"}), r"model_fields has \['positon'\]"),
    (dict(model_fields=3), "model_fields=3 must be a dict of ModelConfig fields"),
])
def test_run_validation_messages(kwargs, match):
    with pytest.raises(ValueError, match=match):
        Run(**kwargs)


@pytest.mark.parametrize("kwargs, match", [
    (dict(corpus="nope"), "ArchRun.corpus='nope' is not a known corpus"), (dict(n_docs=0), "ArchRun.n_docs=0"),
    (dict(n_layer=0), r"ArchRun\.n_layer=0 must be a positive int"), (dict(data_seed=-2), "ArchRun.data_seed=-2"),
])
def test_arch_run_validation_messages(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ArchRun(**kwargs)


def test_run_is_frozen_hashable_and_replace_revalidates():
    run = Run(lr=50.0, model_fields={"position": "rope", "bias": False})  # absurd lrs are allowed (stability)
    assert run.model_fields == (("bias", False), ("position", "rope"))  # sorted pairs: hashable
    assert hash(run) == hash(Run(lr=50.0, model_fields={"bias": False, "position": "rope"}))
    with pytest.raises(AttributeError):
        run.steps = 3
    with pytest.raises(ValueError, match="warmup"):
        run.replace(steps=5, warmup=10)
    cfg = run.model_config(50, norm="rmsnorm")
    assert (cfg.vocab_size, cfg.position, cfg.bias, cfg.norm, cfg.n_layer, cfg.block_size) == \
           (50, "rope", False, "rmsnorm", 2, 64)
    assert isinstance(ArchRun(), Run) and ArchRun().replace(seed=3).n_docs == 3000  # a subclass keeps its data
    assert Run().tokens == 300 * 16 * 64 and size_label(2, 64) == "L2-C64"


def test_warmup_as_a_share_of_steps():
    assert Run(steps=300).warmup_steps == 15  # None: 5% of the steps
    assert Run(steps=300, warmup=0.1).warmup_steps == 30
    assert Run(steps=300, warmup=0.1).replace(steps=45).warmup_steps == 4  # a share follows the steps
    assert Run(steps=10, warmup=0.05).warmup_steps == 1  # at least one step
    assert Run(steps=300, warmup=0).warmup_steps == 0 and Run(steps=300, warmup=7).warmup_steps == 7
    # a share is floor(share * steps): exactly the steps // 20 and steps // 10 the old recipes used
    assert all(Run(steps=s).warmup_steps == max(1, s // 20) for s in range(1, 5000))
    assert all(Run(steps=s, warmup=0.1).warmup_steps == max(1, s // 10) for s in range(1, 5000))


def test_train_config_is_the_old_recipes_train_config():
    run = Run(steps=300, lr=5e-3, seed=7)
    old = TrainConfig(batch_size=16, max_steps=300, lr=5e-3, min_lr=5e-3 / 10, warmup_steps=15, schedule="cosine",
                      eval_interval=0, eval_batches=1, log_interval=30, seed=7, device="cpu", progress=False)
    assert run.train_config() == old  # what train_lm / SmallRun / train_on_texts built by hand
    assert run.train_config(lr=1e-2).min_lr == 1e-2 / 10  # min_lr follows an overridden lr
    with pytest.raises(ValueError, match="unknown TrainConfig"):
        run.train_config(warmup_stepz=1)


# ------------------------------------------------------------------------------------------- train


def test_train_on_text_holds_out_the_tail_and_unpacks():
    out = train(TINY, TEXT)
    assert isinstance(out, Trained) and isinstance(out.tokenizer, CharTokenizer)
    model, tok, val = out  # unpacks like the old train_lm
    assert model is out.model and tok is out.tokenizer and val == out.val_loss
    assert math.isfinite(val) and val < math.log(tok.vocab_size)  # learned something in 6 steps
    cut = TEXT.rfind("\n", 0, int(len(TEXT) * 0.95)) + 1  # the last 5%, cut at a document boundary
    assert len(out.splits.train) == cut and len(out.splits.val) == len(TEXT) - cut
    assert [r["step"] for r in out.history][-1] == TINY.steps and not model.training
    assert out.trainer.step == TINY.steps and out.seconds > 0


def test_train_on_text_with_val_and_tokenizer():
    tok = CharTokenizer.from_text(TEXT + "#")
    out = train(TINY, TEXT, val=TEXT[:2000], tokenizer=tok)
    assert out.tokenizer is tok and len(out.splits.train) == len(TEXT) and len(out.splits.val) == 2000
    assert out.model.config.vocab_size == tok.vocab_size


def test_train_on_ids_and_on_splits_give_the_same_model():
    tok = CharTokenizer.from_text(TEXT)
    ids = torch.from_numpy(tok.encode_to_array(TEXT, dtype=np.int64))
    a = train(TINY, ids, vocab_size=tok.vocab_size)
    n_val = round(len(ids) * 0.05)
    assert len(a.splits.val) == n_val and torch.equal(a.splits.val, ids[-n_val:])
    b = train(TINY, DataSplits(ids[:-n_val], ids[-n_val:], tok.vocab_size))
    assert all(torch.equal(p, q) for p, q in zip(_weights(a.model), _weights(b.model)))
    assert a.val_loss == b.val_loss
    c = train(TINY, ids.numpy(), val=ids[-n_val:], tokenizer=tok)  # numpy ids, explicit val ids
    assert len(c.splits.train) == len(ids)
    with pytest.raises(ValueError, match="vocab_size="):
        train(TINY, ids)


def test_train_is_deterministic_given_the_seed():
    a, b = train(TINY, TEXT), train(TINY, TEXT)
    assert all(torch.equal(p, q) for p, q in zip(_weights(a.model), _weights(b.model)))
    assert a.val_loss == b.val_loss and [r["loss"] for r in a.history] == [r["loss"] for r in b.history]
    c = train(TINY.replace(seed=1), TEXT)
    assert not torch.equal(_weights(a.model)[0], _weights(c.model)[0])


def test_train_matches_a_hand_built_trainer():
    # the recipe, spelled out: seed, GPT(run.model_config), Trainer(run.train_config), the library's held-out loss
    from minillm import GPT
    from minillm.evaluation.loss import heldout_loss
    from minillm.train.trainer import Trainer

    out = train(TINY, TEXT)
    torch.manual_seed(TINY.seed)
    model = GPT(TINY.model_config(out.tokenizer.vocab_size))
    Trainer(model, TINY.train_config(), out.splits).fit()
    assert all(torch.equal(p, q) for p, q in zip(_weights(out.model), _weights(model)))
    assert out.val_loss == heldout_loss(model, out.splits.val, max_windows=TINY.eval_windows)


def test_train_with_a_given_model_fit_false_and_overrides():
    from minillm import GPT

    torch.manual_seed(0)
    model = GPT(TINY.model_config(CharTokenizer.from_text(TEXT).vocab_size, position="rope"))
    rows = []
    out = train(TINY, TEXT, model=model, fit=False, log_interval=1, hooks={"on_step": lambda tr, r: rows.append(r)})
    assert out.model is model and out.trainer.step == 0 and out.val_loss is None and not out.history
    out.trainer.fit(stop_at=2)  # the caller drives the fit
    assert len(rows) == 2
    assert train(TINY.replace(steps=2), TEXT, score=False).val_loss is None


def test_stop_on_nonfinite_logs_every_step_and_reports_instead_of_raising():
    out = train(TINY, TEXT, stop_on_nonfinite=True)
    assert len(out.history) == TINY.steps and out.diverged_at is None  # a row per step
    assert out.initial_loss == out.history[0]["loss"]
    assert out.final_loss == pytest.approx(np.mean([out.history[-1]["loss"]]))
    with pytest.raises(ValueError, match="stop_on_nonfinite sets log_interval"):
        train(TINY, TEXT, stop_on_nonfinite=True, log_interval=5)


def test_train_on_packed_rows_fine_tunes_the_given_model():
    from minillm import GPT

    torch.manual_seed(0)
    model = GPT(TINY.model_config(20))
    x = torch.randint(0, 20, (3, 16))
    y = x.roll(-1, 1)
    y[:, :8] = -100  # loss on the second half only
    before = _weights(model)
    out = train(TINY.replace(warmup=0.1), (x, y), model=model)  # batch clamped to the 3 rows
    assert out.splits is None and out.trainer is None and out.val_loss is None and len(out.history) == 1
    assert not torch.equal(before[0], _weights(model)[0])
    with pytest.raises(ValueError, match="pass model="):
        train(TINY, (x, y))


@pytest.mark.parametrize("data, kwargs, err, match", [
    ("ab\n" * 5, {}, ValueError, "fewer than one window of block_size\\+1=17"),
    (TEXT, dict(val="ab"), ValueError, "validation data has 2 tokens, fewer than one window"),
    ("", {}, ValueError, "non-empty str"),
    (TEXT, dict(val_fraction=1.5), ValueError, "val_fraction"),
    ({"text": TEXT}, {}, TypeError, "data must be text, 1-D token ids, a DataSplits or"),
])
def test_train_rejects_bad_data(data, kwargs, err, match):
    with pytest.raises(err, match=match):
        train(TINY, data, **kwargs)


def test_train_needs_a_run():
    with pytest.raises(TypeError, match="run must be a Run"):
        train({"steps": 3}, TEXT)
    with pytest.raises(TypeError, match="ArchRun"):
        check_run(Run())
