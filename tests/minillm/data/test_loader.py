"""Tests for minillm.data.loader: random and sequential batches, resumable state, train/val splits."""

import io

import numpy as np
import pytest
import torch

from minillm.data.loader import DataSplits, RandomLoader, SequentialLoader, get_batch
from minillm.data.shards import check_compatible, read_shard, write_shard


def _gen(seed):
    return torch.Generator().manual_seed(seed)


@pytest.fixture
def shard_tokens(tmp_path):
    """tokens[i] = i % 1000 as a memory-mapped uint16 shard."""
    write_shard(tmp_path / "t.bin", np.arange(5000) % 1000, vocab_size=1000)
    return read_shard(tmp_path / "t.bin").tokens


# --------------------------------------------------------------------------- get_batch


def test_get_batch_windows_are_shifted_by_one():
    tokens = np.arange(10_000)
    x, y = get_batch(tokens, batch_size=8, context_length=16, generator=_gen(0))
    assert x.shape == y.shape == (8, 16)
    assert x.dtype == y.dtype == torch.int64
    # With tokens[i] = i every row is a run of consecutive ids, and y is x + 1.
    torch.testing.assert_close(x, x[:, :1] + torch.arange(16))
    torch.testing.assert_close(y, x + 1)


def test_get_batch_same_on_numpy_memmap_and_torch(shard_tokens):
    as_numpy = np.asarray(shard_tokens).astype(np.int64)
    as_torch = torch.from_numpy(as_numpy)
    batches = [get_batch(t, 4, 32, generator=_gen(7)) for t in (shard_tokens, as_numpy, as_torch)]
    for x, y in batches[1:]:
        torch.testing.assert_close(x, batches[0][0])
        torch.testing.assert_close(y, batches[0][1])
    assert batches[0][0].dtype == torch.int64  # uint16 on disk, int64 for the embedding lookup


def test_get_batch_deterministic_under_generator():
    tokens = torch.arange(1000)
    a = get_batch(tokens, 4, 8, generator=_gen(1))
    b = get_batch(tokens, 4, 8, generator=_gen(1))
    c = get_batch(tokens, 4, 8, generator=_gen(2))
    torch.testing.assert_close(a, b)
    assert not torch.equal(a[0], c[0])


def test_get_batch_reaches_the_last_token():
    """n = T + 1 leaves exactly one window: the whole stream."""
    tokens = np.array([5, 6, 7, 8, 9])
    x, y = get_batch(tokens, 3, 4, generator=_gen(0))
    assert x.tolist() == [[5, 6, 7, 8]] * 3 and y.tolist() == [[6, 7, 8, 9]] * 3


def test_get_batch_covers_every_start():
    tokens = np.arange(20)
    x, _ = get_batch(tokens, 2000, 4, generator=_gen(0))
    assert sorted(set(x[:, 0].tolist())) == list(range(16))  # starts 0..n-T-1, all reachable


def test_get_batch_errors():
    with pytest.raises(ValueError, match=r"need more than context_length=8 tokens .* got 8: use a smaller"):
        get_batch(np.arange(8), 2, 8)
    with pytest.raises(ValueError, match="batch_size must be a positive int, got 0"):
        get_batch(np.arange(100), 0, 8)
    with pytest.raises(ValueError, match=r"must be 1-D .* got shape \(2, 50\)"):
        get_batch(np.zeros((2, 50), dtype=np.int64), 2, 8)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error raised without CUDA")
def test_get_batch_cuda_without_cuda_is_an_error():
    with pytest.raises(RuntimeError, match="CUDA is not available.*Use device='cpu'"):
        get_batch(np.arange(100), 2, 8, device="cuda")


@pytest.mark.gpu  # skipped without CUDA by tests/conftest.py
def test_get_batch_cuda_matches_cpu():
    tokens = np.arange(1000)
    x, y = get_batch(tokens, 4, 8, device="cuda", generator=_gen(3))
    xc, yc = get_batch(tokens, 4, 8, generator=_gen(3))
    assert x.device.type == "cuda"
    torch.testing.assert_close(x.cpu(), xc)
    torch.testing.assert_close(y.cpu(), yc)
    with pytest.raises(ValueError, match="CPU torch.Generator"):
        get_batch(tokens, 2, 8, generator=torch.Generator(device="cuda"))


# --------------------------------------------------------------------------- RandomLoader


def test_random_loader_matches_get_batch():
    tokens = np.arange(3000)
    loader = RandomLoader(tokens, 4, 16, seed=11)
    gen = _gen(11)
    for _ in range(3):
        torch.testing.assert_close(next(loader), get_batch(tokens, 4, 16, generator=gen))
    assert loader.step == 3


def test_random_loader_resume_gives_identical_batches(shard_tokens):
    loader = RandomLoader(shard_tokens, 4, 16, seed=5)
    for _ in range(3):
        next(loader)
    buf = io.BytesIO()
    torch.save(loader.state_dict(), buf)  # the state survives a checkpoint file
    expected = [next(loader) for _ in range(4)]

    resumed = RandomLoader(shard_tokens, 4, 16, seed=5)
    buf.seek(0)
    resumed.load_state_dict(torch.load(buf))
    assert resumed.step == 3
    for (x, y), (ex, ey) in zip((next(resumed) for _ in range(4)), expected):
        torch.testing.assert_close(x, ex)
        torch.testing.assert_close(y, ey)


def test_random_loader_ranks_split_the_global_batch():
    tokens = np.arange(3000)
    whole = next(RandomLoader(tokens, 6, 8, seed=0))
    parts = [next(RandomLoader(tokens, 3, 8, seed=0, rank=r, world_size=2)) for r in range(2)]
    torch.testing.assert_close(torch.cat([p[0] for p in parts]), whole[0])
    torch.testing.assert_close(torch.cat([p[1] for p in parts]), whole[1])


def test_random_loader_refuses_mismatched_state():
    tokens = np.arange(3000)
    state = RandomLoader(tokens, 4, 16, seed=5).state_dict()
    with pytest.raises(ValueError, match=r"different settings \(batch_size: saved 4, now 8\)"):
        RandomLoader(tokens, 8, 16, seed=5).load_state_dict(state)
    with pytest.raises(ValueError, match="from a 'RandomLoader', not a 'SequentialLoader'"):
        SequentialLoader(tokens, 4, 16).load_state_dict(state)
    with pytest.raises(ValueError, match=r"rank must be an int in \[0, world_size=2\), got 2"):
        RandomLoader(tokens, 4, 16, seed=5, rank=2, world_size=2)


# --------------------------------------------------------------------------- SequentialLoader


def test_sequential_loader_covers_each_target_once():
    n, B, T = 1001, 4, 10  # 100 windows -> 25 batches
    loader = SequentialLoader(np.arange(n), B, T)
    assert len(loader) == 25
    batches = list(loader)
    ys = torch.cat([y for _, y in batches]).flatten()
    assert ys.tolist() == list(range(1, n))  # every token but the first is a target, exactly once, in order
    torch.testing.assert_close(batches[0][0][0], torch.arange(10))


def test_sequential_loader_ranks_are_disjoint_and_equal_length():
    n, B, T, W = 1001, 2, 10, 3  # 100 windows -> 50 batches -> 16 per rank, 2 dropped
    loaders = [SequentialLoader(np.arange(n), B, T, rank=r, world_size=W) for r in range(W)]
    assert [len(ld) for ld in loaders] == [16, 16, 16]
    targets = [torch.cat([y for _, y in ld]).flatten() for ld in loaders]
    all_targets = torch.cat(targets)
    assert all_targets.unique().numel() == all_targets.numel() == 3 * 16 * B * T
    # rank r's first batch is global batch r
    assert targets[1][0].item() == 1 * B * T + 1


def test_sequential_loader_resume_mid_epoch_and_next_epoch():
    tokens = np.arange(500)
    loader = SequentialLoader(tokens, 2, 8)
    it = iter(loader)
    first = [next(it) for _ in range(5)]
    state = loader.state_dict()
    rest = list(it)
    assert loader.epoch == 1 and loader.step == 0
    assert len(first) + len(rest) == len(loader)

    resumed = SequentialLoader(tokens, 2, 8)
    resumed.load_state_dict(state)
    again = list(resumed)
    assert len(again) == len(rest)
    for (x, y), (ex, ey) in zip(again, rest):
        torch.testing.assert_close(x, ex)
        torch.testing.assert_close(y, ey)
    torch.testing.assert_close(next(iter(loader))[0], first[0][0])  # a new epoch restarts at batch 0


def test_sequential_loader_errors():
    with pytest.raises(ValueError, match=r"do not fill one batch per rank.* needs at least 321 tokens"):
        SequentialLoader(np.arange(300), 4, 8, world_size=10)
    loader = SequentialLoader(np.arange(300), 4, 8)
    with pytest.raises(ValueError, match=r"step must be in \[0, 9\), got 9"):
        loader.batch(9)
    state = loader.state_dict()
    with pytest.raises(ValueError, match="num_tokens: saved 300, now 301"):
        SequentialLoader(np.arange(301), 4, 8).load_state_dict(state)


# --------------------------------------------------------------------------- DataSplits


def test_splits_from_tokens_hold_out_the_tail():
    tokens = np.arange(1000)
    s = DataSplits.from_tokens(tokens, val_fraction=0.1, vocab_size=1000)
    assert s.train.tolist() == list(range(900)) and s.val.tolist() == list(range(900, 1000))
    assert DataSplits.from_tokens(torch.arange(50), val_fraction=0.0).val is None


def test_splits_from_tokens_errors():
    with pytest.raises(ValueError, match=r"val_fraction must be in \[0, 1\), got 1.0"):
        DataSplits.from_tokens(np.arange(10), val_fraction=1.0)
    with pytest.raises(ValueError, match="leaves 1 validation tokens; need at least 2"):
        DataSplits.from_tokens(np.arange(10), val_fraction=0.1)
    with pytest.raises(ValueError, match="token id 9 >= vocab_size=5"):
        DataSplits.from_tokens(np.arange(10), val_fraction=0.5, vocab_size=5)
    with pytest.raises(ValueError, match="train needs at least 2 tokens"):
        DataSplits(train=np.array([1]), val=None)


def test_splits_from_dir(tmp_path):
    write_shard(tmp_path / "train.bin", np.arange(100) % 30, vocab_size=30, tokenizer_hash="aa")
    write_shard(tmp_path / "val.bin", [1, 2, 3], vocab_size=30, tokenizer_hash="aa")
    s = DataSplits.from_dir(tmp_path)
    assert len(s.train) == 100 and s.val.tolist() == [1, 2, 3]
    assert (s.vocab_size, s.tokenizer_hash) == (30, "aa")
    x, y = get_batch(s.train, 2, 8, generator=_gen(0))
    assert x.shape == (2, 8)
    with pytest.raises(ValueError, match="set ModelConfig.vocab_size >= 30"):
        check_compatible(s, vocab_size=16)


def test_splits_from_dir_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"no prepared data directory .*minillm prepare"):
        DataSplits.from_dir(tmp_path / "missing")
    with pytest.raises(FileNotFoundError, match=r"train\.bin"):
        DataSplits.from_dir(tmp_path)
    write_shard(tmp_path / "train.bin", np.arange(100) % 30, vocab_size=30)
    write_shard(tmp_path / "val.bin", [1, 2, 3], vocab_size=40)
    with pytest.raises(ValueError, match="different tokenizers"):
        DataSplits.from_dir(tmp_path)
