"""Data-parallel training with real ``torchrun`` processes (gloo on the CPU).

Two processes must follow the one-process run: the same global batches at the same steps, the DDP
gradient equal to the global-batch gradient even when the last batch splits unevenly.
"""

import os
import subprocess
import sys

import pytest
import torch

from zoomkern.data import make_megapixel_mnist
from zoomkern.training import checkpoint
from zoomkern.training.distributed import ShardedBatchSampler, World

ROOT = os.path.join(os.path.dirname(__file__), "..")
TRAIN = os.path.join(ROOT, "python", "train.py")


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("ddp")
    make_megapixel_mnist(root, 12, 6, size=(128, 128), n_noise=3, scale=0.25, progress=False)
    return str(root)


def _args(root, out, model, **kw):
    a = dict(
        root=root, size=128, n_train=12, n_test=6, n_noise=3, scale=0.25, tile_size=64, s2=0.5, sub_grid=4,
        patch_size=24, n_tiles=3, n_sub=2, feature_widths="4 8", epochs=2, lr=0.01, plot_images=0,
        device="cpu", model=model, out=str(out),
        batch_size=5,  # 12 samples: global batches 5, 5, 2, split 2+3, 2+3, 1+1 over two ranks
    )  # fmt: skip
    a.update(kw)
    return [s for k, v in a.items() for s in (f"--{k.replace('_', '-')}", *str(v).split())]


def _run(args, nproc):
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=ROOT)
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}"]
    cmd = (launcher if nproc > 1 else [sys.executable]) + [TRAIN, *args]
    p = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]
    return p.stdout


def _weights(out):
    return checkpoint.load(os.path.join(out, "checkpoint.pt"))["model"]


def test_sampler_slices_cover_each_global_batch_once():
    n, batch = 23, 8
    ranks = [
        list(ShardedBatchSampler(n, batch, World(r, 3), shuffle=True, seed=7, drop_short=False))
        for r in range(3)
    ]
    steps = list(zip(*ranks, strict=True))
    assert len(steps) == 3
    one = list(ShardedBatchSampler(n, batch, World(), shuffle=True, seed=7, drop_short=False))
    for (a, b, c), whole in zip(steps, one, strict=True):
        assert a + b + c == whole  # rank slices, in order, are exactly the one-process batch
    # the one-process order is what DataLoader(shuffle=True, generator) gave before sharding existed
    g = torch.Generator().manual_seed(7)
    loader = torch.utils.data.DataLoader(range(n), batch_size=batch, shuffle=True, generator=g)
    assert [b.tolist() for b in loader] == one

    # a last global batch smaller than the number of ranks is dropped in training, kept at evaluation
    def steps(rank, drop):
        return len(ShardedBatchSampler(17, 8, World(rank, 2), shuffle=False, seed=0, drop_short=drop))

    assert [steps(0, True), steps(1, True)] == [2, 2]  # last global batch: one sample for two ranks
    assert [steps(0, False), steps(1, False)] == [2, 3]  # rank 1 evaluates it, rank 0 has nothing left
    with pytest.raises(ValueError, match="batch_size=1"):
        ShardedBatchSampler(4, 1, World(0, 2), shuffle=False, seed=0, drop_short=True)


def test_two_processes_match_one(data, tmp_path):
    # The low-resolution CNN is deterministic, so the runs can only differ by float rounding.
    one = _run(_args(data, tmp_path / "one", "cnn_lowres"), 1)
    two = _run(_args(data, tmp_path / "two", "cnn_lowres"), 2)
    assert "2 torchrun processes" in two and "torchrun" not in one
    assert two.count("test accuracy") == 1  # one summary, from rank 0
    w1, w2 = _weights(tmp_path / "one"), _weights(tmp_path / "two")
    w0 = _weights_at_init(tmp_path)
    for k in w1:
        moved = (w1[k].float() - w0[k].float()).norm()
        diff = (w1[k].float() - w2[k].float()).norm()
        assert diff <= 1e-3 * moved + 1e-6, f"{k}: runs differ by {diff:.2e}, training moved it {moved:.2e}"


def _weights_at_init(tmp_path):
    from zoomkern.training import TrainConfig, build_model
    from zoomkern.training.loop import seed_everything

    seed_everything(0)
    return build_model(TrainConfig(model="cnn_lowres", scale=0.25)).state_dict()


def test_zoomin_resume_under_torchrun(data, tmp_path):
    full = tmp_path / "full"
    _run(_args(data, full, "zoomin"), 2)
    part = tmp_path / "part"
    _run(_args(data, part, "zoomin", time_limit_min=1e-6), 2)  # stops after epoch 1
    assert checkpoint.load(os.path.join(part, "checkpoint.pt"))["epoch"] == 0
    _run(_args(data, part, "zoomin") + ["--resume"], 2)
    a, b = _weights(full), _weights(part)
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0, msg=f"{k} differs after resume")
    with open(os.path.join(part, "metrics.csv")) as f:
        assert len(f.read().strip().splitlines()) == 3  # header + 2 epochs
