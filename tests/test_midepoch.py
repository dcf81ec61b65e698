"""Mid-epoch checkpoints of evaluation runs (--ckpt_steps, checkpoint_partial.pth.tar) and the
resume from one: batches skipped without being read, the refusals, and ImageNet runs killed in
the middle of an epoch that end as the uninterrupted run, to the bit."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from common import checkpoint as ckpt
from common.config import ConfigError
from common.data import Batches, ImageSet
from common.distributed import Group
from common.imagefolder import Stream, open_splits
from common.metrics import DivergedError, Midway, Stats
from common.progress import Progress
from sota.genotypes import get_genotype
from sota.train import prepare
from sota.train_imagenet import ImageNetRun, build_parser, config
from tests.conftest import kill_when, partial_after, run_script
from tests.fixtures.datasets import write_imagefolder

TINY = ["--image_size", "64", "--init_channels", "8", "--layers", "3", "--batch_size", "4", "--workers", "0",
        "--report_freq", "100", "--gpu", "cpu", "--no_tensorboard"]
SCRIPT = [*TINY, "--image_size", "224"]  # the script's auxiliary head needs the original's 224x224 crops


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    """12 training images of 3 classes: 3 steps of 4 per epoch."""
    root = tmp_path_factory.mktemp("imagenet")
    write_imagefolder(root, classes=("n01", "n02", "n03"), n_per_class=4, n_test_per_class=2, size=(48, 40),
                      test_split="val")
    return root


# -- data: a pass from its step S on -----------------------------------------------------------

def test_a_cifar_pass_from_step_s_is_the_tail_of_the_whole_pass():
    gen = torch.Generator().manual_seed(0)
    data = ImageSet(torch.randint(0, 256, (10, 8, 8, 3), dtype=torch.uint8, generator=gen), torch.arange(10) % 3,
                    3, (0.5, 0.4, 0.3), (0.2, 0.25, 0.3), 2)
    for shard in ((0, 1), (1, 2)):
        batches = Batches(data, None, 4, augment=True, cutout_length=3, seed=1, shard=shard)
        whole, tail = list(batches((0, 5), 0.5)), list(batches((0, 5), 0.5, start=1))
        assert len(whole) == 3 and len(tail) == 2
        for (xa, ya), (xb, yb) in zip(whole[1:], tail, strict=True):  # crops, flips and cutouts alike
            assert torch.equal(xa, xb) and torch.equal(ya, yb)


def test_a_stream_from_step_s_reads_only_the_images_of_its_tail(folder, monkeypatch):
    train, _ = open_splits(folder, 64)
    for rank in range(2):
        stream = Stream(train, 2, train=True, seed=3, shard=(rank, 2), workers=0, device=torch.device("cpu"))
        whole = list(stream(1))
        read: list[str] = []
        monkeypatch.setattr(train, "loader", lambda path, load=train.loader: (read.append(path), load(path))[1])
        tail = list(stream(1, start=2))
        monkeypatch.undo()
        assert len(whole) == 3 and len(tail) == 1 and len(read) == 2  # the skipped images are not read
        assert torch.equal(whole[2][0], tail[0][0]) and torch.equal(whole[2][1], tail[0][1])
        assert list(stream(1)) and stream.sampler.skip == 0  # the next whole pass starts at its beginning


def test_a_resumed_stream_draws_nothing_from_the_global_rng(folder):
    """A pass draws its workers' seed from the global RNG when it starts; the resumed pass's draw
    happened before the checkpoint was written, so drop path masks continue as uninterrupted."""
    train, _ = open_splits(folder, 64)
    stream = Stream(train, 4, train=True, seed=0, shard=(0, 1), workers=0, device=torch.device("cpu"))
    torch.manual_seed(0)
    next(stream(0, start=1))
    assert torch.equal(torch.get_rng_state(), torch.manual_seed(0).get_state())


def test_stats_continue_from_their_saved_state():
    logits, y = torch.randn(6, 4, generator=torch.Generator().manual_seed(0)), torch.tensor([0, 1, 2, 3, 0, 1])
    whole, first, rest = Stats(torch.device("cpu")), Stats(torch.device("cpu")), Stats(torch.device("cpu"))
    for s in (whole, first):
        s.add(logits[:3], y[:3], torch.tensor(1.25))
    rest.load(first.state())
    for s in (whole, rest):
        s.add(logits[3:], y[3:], torch.tensor(0.1))
    assert whole.result() == rest.result()


# -- the partial file: retention, choice and refusals -----------------------------------------

def test_the_partial_file_is_neither_an_epoch_nor_pruned(tmp_path):
    for name in ("checkpoint_1.pth.tar", "checkpoint_2.pth.tar", "checkpoint_3.pth.tar", ckpt.PARTIAL):
        (tmp_path / name).write_bytes(b"x")
    assert ckpt.checkpoint_epochs(tmp_path) == [1, 2, 3]
    ckpt.prune_checkpoints(tmp_path, keep_every=0, keep=3)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint_3.pth.tar", ckpt.PARTIAL]


def tiny(folder: Path, exp: Path, *args: str):
    return config(build_parser().parse_args(["--data", str(folder), "--exp_root", str(exp), "--arch", "darts_pt_s5_0",
                                             *TINY, *args]))


def write_partial(folder: Path, exp: Path, epoch: int, **extra) -> Path:
    """A partial checkpoint of the tiny run, as sota/train.py writes it (`extra` overrides)."""
    r = ImageNetRun(tiny(folder, exp), get_genotype("darts_pt_s5_0"), torch.device("cpu"), Group())
    run = exp / "sota" / "imagenet" / "eval" / "eval-darts_pt_s5_0-0"
    state = {"epoch": epoch, "step": 1, **r.state(), **Group().per_process("stats", Stats(r.device).state()),
             "batch_size": 4, "best_acc": None, "test_acc": None, "train_time": 0.0, **extra}
    ckpt.save_checkpoint(state, ckpt.partial_path(run))
    return run


def test_resume_takes_the_partial_checkpoint_unless_a_full_one_is_newer(folder, tmp_path):
    run = write_partial(folder, tmp_path, epoch=0)  # stopped in the first epoch: no full checkpoint yet
    cfg = tiny(folder, tmp_path, "--resume_epoch", "-1")
    assert prepare(cfg, Group(), ImageNetRun)[4]["step"] == 1
    full = {k: v for k, v in torch.load(ckpt.partial_path(run), weights_only=True).items() if k != "step"}
    ckpt.save_checkpoint({**full, "epoch": 1}, ckpt.checkpoint_path(run, 1))  # the partial one is stale
    state = prepare(cfg, Group(), ImageNetRun)[4]
    assert state["epoch"] == 1 and "step" not in state
    write_partial(folder, tmp_path, epoch=1)  # as new as the full one: in the epoch after it
    assert prepare(cfg, Group(), ImageNetRun)[4]["step"] == 1
    assert "step" not in prepare(tiny(folder, tmp_path, "--resume_epoch", "1"), Group(), ImageNetRun)[4]


@pytest.mark.parametrize("extra, flag, words", [
    ({"batch_size": 8}, "--batch_size 4", "stopped in the middle of an epoch of batches of 8: pass --batch_size 8"),
    ({"nproc": 2}, "--nproc 1", "was written by a run of 2 process(es): pass --nproc 2"),
])
def test_a_partial_checkpoint_of_other_batches_is_refused(folder, tmp_path, extra, flag, words):
    write_partial(folder, tmp_path, epoch=0, **extra)
    with pytest.raises(ConfigError) as e:
        prepare(tiny(folder, tmp_path, "--resume_epoch", "-1"), Group(), ImageNetRun)
    assert f"{flag}: " in f"--{e.value}" and words in str(e.value)


def test_a_corrupt_partial_checkpoint_is_named_and_kept(folder, tmp_path):
    run = write_partial(folder, tmp_path, epoch=0)
    ckpt.partial_path(run).write_bytes(b"not a checkpoint")
    with pytest.raises(ckpt.CheckpointError, match="cannot read checkpoint .*checkpoint_partial.pth.tar"):
        prepare(tiny(folder, tmp_path, "--resume_epoch", "-1"), Group(), ImageNetRun)
    assert ckpt.partial_path(run).read_bytes() == b"not a checkpoint"


def test_an_epoch_checkpoints_every_k_steps_but_its_last_and_never_a_diverged_run(folder, tmp_path):
    r = ImageNetRun(tiny(folder, tmp_path, "--ckpt_steps", "1"), get_genotype("darts_pt_s5_0"),
                    torch.device("cpu"), Group())
    quiet = Progress(1, every_steps=1000, every_s=0.0)
    written: list[tuple[int, int, int]] = []
    midway = Midway(Stats(r.device), write=lambda epoch, step, stats: written.append((epoch, step, stats.n)))
    r.train_epoch(0, quiet, midway)
    assert written == [(0, 1, 4), (0, 2, 8)]  # 3 steps: the epoch's own checkpoint follows the last
    losses = iter([torch.tensor(1.0), torch.tensor(float("nan"))])  # step 1 diverges: no line until step 2
    r.criterion = lambda logits, y: next(losses).requires_grad_()
    with pytest.raises(DivergedError):
        r.train_epoch(1, quiet, Midway(Stats(r.device), write=lambda *args: written.append(args)))
    assert len(written) == 3  # step 0's checkpoint only


def test_defaults_are_1000_steps_on_imagenet_and_none_on_cifar():
    from sota.train import build_parser as cifar_parser

    assert build_parser().parse_args([]).ckpt_steps == 1000
    assert cifar_parser().parse_args([]).ckpt_steps == 0


# -- end to end: killed in the middle of an epoch, resumed ----------------------------------------

@pytest.fixture(scope="module")
def uninterrupted(folder, tmp_path_factory) -> tuple[list[str], Path]:
    """3 epochs with drop path (the global RNG matters), no mid-epoch checkpoint (3 steps < 1000)."""
    exp = tmp_path_factory.mktemp("exp")
    env = ["--data", str(folder), "--exp_root", str(exp), *SCRIPT, "--epochs", "3", "--drop_path_prob", "0.3"]
    run_script("eval-imagenet.sh", *env, "--nproc", "1")
    return env, exp / "sota" / "imagenet" / "eval" / "eval-darts_pt_s5_0-0"


@pytest.mark.slow
@pytest.mark.parametrize("nproc", [1, 2])
def test_killed_mid_epoch_and_resumed_matches_uninterrupted(uninterrupted, nproc):
    env, out = uninterrupted
    ref = out
    if nproc == 2:  # the reference of two processes: their shards of each batch
        run_script("eval-imagenet.sh", *env, "--nproc", "2", "--expid_tag", "p2")
        ref = out.parent / (out.name + "-p2")
    cut = out.parent / f"{out.name}-cut{nproc}"
    args = [*env, "--nproc", str(nproc), "--expid_tag", f"cut{nproc}"]
    kill_when("eval-imagenet.sh", [*args, "--ckpt_steps", "1"], partial_after(cut, 2))
    state = torch.load(ckpt.partial_path(cut), weights_only=True)
    assert state["epoch"] == 2 and 1 <= state["step"] < 3 and ckpt.checkpoint_epochs(cut) == [2]
    assert len(state.get("process_stats", [state["stats"]])) == nproc
    resumed = run_script("eval-imagenet.sh", *args, "--resume_epoch", "-1", "--ckpt_steps", "2")  # K may differ
    assert f"resumed from epoch 2 step {state['step']} ({ckpt.PARTIAL})" in resumed.stdout
    ha, hb = ((f / "history.jsonl").read_text().splitlines() for f in (ref, cut))
    assert [json.loads(h)["epoch"] for h in hb] == [0, 1, 2]
    assert ha == hb  # every epoch's losses and accuracies, to the last bit
    sa, sb = (torch.load(f / "checkpoint_3.pth.tar", weights_only=True)["state_dict"] for f in (ref, cut))
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not ckpt.partial_path(cut).exists()  # removed with the epoch's checkpoint
