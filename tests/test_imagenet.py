"""ImageNet evaluation (sota.train_imagenet, exp_scripts/eval-imagenet.sh) on a tiny generated
image folder: streamed data, the original's loss and schedule, top-5, checkpoint retention,
bad inputs, resume, and runs of two processes and of two "machines" (gloo on the CPU)."""
from __future__ import annotations

import json
import shutil
import socket
import subprocess
from pathlib import Path

import pytest
import torch
from torch import nn

from common.checkpoint import checkpoint_epochs
from common.config import ConfigError
from common.distributed import Group
from common.imagefolder import IMAGENET_MEAN, IMAGENET_STD, Stream, normalise, open_splits
from common.progress import Progress
from sota.genotypes import genotype_to_dict, get_genotype
from sota.model_imagenet import NetworkImageNet
from sota.train_imagenet import ImageNetRun, build_parser, config
from tests.conftest import REPO, _script_env, fails, kill_when, read_json, run_script
from tests.fixtures.datasets import write_imagefolder

CLASSES = ("n01", "n02", "n03")
# 64x64 crops: a 2x2 final map, so no auxiliary head (it needs the 7x7 or 8x8 map of 224 or 256 px images)
TINY = ["--image_size", "64", "--init_channels", "8", "--layers", "3", "--batch_size", "4", "--workers", "0",
        "--report_freq", "100", "--gpu", "cpu", "--no_tensorboard"]
# the script's auxiliary head needs the original's 224x224 crops (cheap still: C=8, 3 cells)
SCRIPT = [*TINY, "--image_size", "224"]


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("imagenet")
    write_imagefolder(root, classes=CLASSES, n_per_class=4, n_test_per_class=2, size=(48, 40), test_split="val")
    return root


def tiny_config(folder: Path, *args: str):
    return config(build_parser().parse_args(["--data", str(folder), *TINY, *args]))


# -- data ------------------------------------------------------------------------------------------

def test_streams_are_reproducible_whatever_the_workers(folder):
    train, val = open_splits(folder, 64)
    assert train.classes == val.classes == list(CLASSES) and (len(train), len(val)) == (12, 6)
    kwargs = dict(train=True, seed=3, shard=(0, 1), device=torch.device("cpu"))
    a = list(Stream(train, 5, workers=0, **kwargs)(1))
    b = list(Stream(train, 5, workers=2, **kwargs)(1))
    assert [len(y) for _, y in a] == [5, 5, 2] and a[0][0].shape == (5, 3, 64, 64)
    for (xa, ya), (xb, yb) in zip(a, b, strict=True):  # each image's crop is its own, not the worker's
        assert torch.equal(xa, xb) and torch.equal(ya, yb)
    other = list(Stream(train, 5, workers=0, **kwargs)(2))  # another epoch: other order and crops
    assert not torch.equal(torch.cat([x for x, _ in a]), torch.cat([x for x, _ in other]))


def test_batches_are_normalised_as_torchvision_does():
    """uint8 batches normalised on the device: ToTensor then Normalize, to the bit."""
    from PIL import Image
    from torchvision import transforms

    x = torch.randint(0, 256, (3, 3, 8, 8), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    to_float = transforms.Compose([transforms.ToTensor(), transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD)])
    expected = torch.stack([to_float(Image.fromarray(i.permute(1, 2, 0).numpy())) for i in x])
    assert torch.equal(normalise(x), expected)


def test_processes_share_the_epochs(folder):
    train, val = open_splits(folder, 64)
    device = torch.device("cpu")
    # training: equal shares (DistributedSampler), reshuffled per epoch
    shares = [Stream(train, 2, train=True, seed=0, shard=(r, 2), workers=0, device=device) for r in range(2)]
    assert [len(s) for s in shares] == [3, 3]
    labels = [torch.cat([y for _, y in s(0)]) for s in shares]
    assert sorted(torch.cat(labels).tolist()) == sorted(y for _, y in train.samples)
    # testing: every image exactly once, in order of the folder
    tests = [Stream(val, 2, train=False, seed=0, shard=(r, 2), workers=0, device=device) for r in range(2)]
    seen = [torch.cat([x for x, _ in s(0)]) for s in tests]
    whole = torch.cat([x for x, _ in Stream(val, 6, train=False, seed=0, shard=(0, 1), workers=0, device=device)(0)])
    assert torch.equal(torch.stack([seen[i % 2][i // 2] for i in range(6)]), whole)


@pytest.mark.parametrize("break_it, words", [
    (lambda root: shutil.rmtree(root / "val"), "no val/ folder"),
    (lambda root: shutil.rmtree(root / "train" / "n02"), "different classes"),
    (lambda root: [p.unlink() for p in (root / "val" / "n01").iterdir()], "not an image folder"),
    (lambda root: shutil.rmtree(root), "folder not found"),
])
def test_malformed_folders_are_refused_in_one_line(tmp_path, folder, break_it, words):
    root = tmp_path / "data"
    shutil.copytree(folder, root)
    break_it(root)
    with pytest.raises(ConfigError, match=f"^--data {root}: .*{words}") as e:
        open_splits(root, 64)
    assert "\n" not in str(e.value)


# -- protocol --------------------------------------------------------------------------------------

def test_defaults_are_the_originals():
    cfg = config(build_parser().parse_args([]))
    assert (cfg.epochs, cfg.init_channels, cfg.layers, cfg.data.batch_size, cfg.data.image_size) == (250, 48, 14, 128,
                                                                                                       224)
    assert (cfg.optim.learning_rate, cfg.optim.momentum, cfg.optim.weight_decay, cfg.optim.grad_clip) == (0.1, 0.9,
                                                                                                          3e-5, 5.0)
    assert (cfg.label_smooth, cfg.gamma, cfg.decay_period, cfg.auxiliary_weight) == (0.1, 0.97, 1, 0.4)
    assert (cfg.run.ckpt_keep_every, cfg.run.seed, cfg.drop_path_prob) == (50, 0, 0.0)


@pytest.mark.parametrize("args, flag", [
    (["--image_size", "100"], "--image_size 100: must be a multiple of 32"),
    (["--image_size", "64", "--auxiliary"], "--image_size 64: the auxiliary head needs"),
    (["--label_smooth", "1"], "--label_smooth 1.0: must be in [0, 1)"),
    (["--decay_period", "0"], "--decay_period 0: must be at least 1"),
    (["--ckpt_keep_every", "-1"], "--ckpt_keep_every -1: must be at least 0"),
])
def test_bad_values_name_their_flag(folder, args, flag):
    with pytest.raises(ConfigError, match="^" + flag.replace("[", r"\[").replace(")", r"\)")):
        tiny_config(folder, *args)


def test_auxiliary_head_takes_224_or_256_pixels_and_says_so(folder):
    for size in ("224", "256"):
        assert tiny_config(folder, "--image_size", size, "--auxiliary").auxiliary
    with pytest.raises(ConfigError) as e:
        tiny_config(folder, "--image_size", "288", "--auxiliary")
    assert str(e.value) == ("--image_size 288: the auxiliary head needs a final map of 7x7 or 8x8 (--image_size 224 "
                            "or 256): pass --image_size 224 or pass --no_auxiliary")


def test_loss_schedule_and_top5_are_the_originals(folder):
    cfg = tiny_config(folder, "--epochs", "3")
    r = ImageNetRun(cfg, get_genotype("darts_pt_s5_0"), torch.device("cpu"), _one_process())
    logits, y = torch.randn(6, 3, dtype=torch.float64), torch.tensor([0, 1, 2, 2, 1, 0])
    # the original's CrossEntropyLabelSmooth
    smooth = torch.zeros_like(logits).scatter_(1, y.unsqueeze(1), 1) * 0.9 + 0.1 / 3
    expected = (-smooth * nn.LogSoftmax(dim=1)(logits)).mean(0).sum()
    torch.testing.assert_close(r.criterion(logits, y), expected, rtol=1e-12, atol=0)
    lrs = []
    for _ in range(3):
        lrs.append(r.scheduler.get_last_lr()[0])
        r.optimizer.step()  # no gradients: changes nothing
        r.scheduler.step()
    assert lrs == pytest.approx([0.1, 0.097, 0.1 * 0.97 ** 2])
    row = r.evaluate()
    assert set(row) == {"test_acc", "test_loss", "test_acc_top5"} and row["test_acc_top5"] == 100.0  # 3 classes


def _smoothed_ce(logits: torch.Tensor, y: torch.Tensor, eps: float = 0.1) -> torch.Tensor:
    """The original's CrossEntropyLabelSmooth, written out."""
    classes = logits.shape[1]
    smooth = torch.zeros_like(logits).scatter_(1, y.unsqueeze(1), 1) * (1 - eps) + eps / classes
    return (-smooth * nn.functional.log_softmax(logits, dim=1)).mean(0).sum()


def test_a_step_smooths_the_auxiliary_loss_too(folder):
    """One training step at 224 px with the auxiliary head (the original's loss is label-smoothed
    CE of the logits plus 0.4 x label-smoothed CE of the auxiliary logits), by hand."""
    import copy

    torch.manual_seed(0)
    cfg = tiny_config(folder, "--image_size", "224", "--auxiliary", "--fast")
    r = ImageNetRun(cfg, get_genotype("darts_pt_s5_0"), torch.device("cpu"), _one_process())
    net = copy.deepcopy(r.net).train()
    x, y, _ = next(iter(r.train_batches(0)))
    logits, logits_aux = net(x)
    main, aux = _smoothed_ce(logits, y), _smoothed_ce(logits_aux, y)
    assert abs(aux.item() - nn.functional.cross_entropy(logits_aux, y).item()) > 1e-3  # smoothing shows
    _, logged = r.train_epoch(0, Progress(1, every_steps=1000, every_s=0.0))
    assert logged == pytest.approx((main + 0.4 * aux).item(), rel=1e-5)


def test_training_images_are_jittered_as_the_original():
    """The original's train_imagenet.py: RandomResizedCrop(224), RandomHorizontalFlip,
    ColorJitter(brightness=0.4, contrast=0.4, saturation=0.4, hue=0.2)."""
    from torchvision import transforms

    from common.imagefolder import train_transform

    steps = train_transform(224).transforms
    assert [type(t) for t in steps[:3]] == [transforms.RandomResizedCrop, transforms.RandomHorizontalFlip,
                                            transforms.ColorJitter]
    crop, flip, jitter = steps[:3]
    original = transforms.ColorJitter(brightness=0.4, contrast=0.4, saturation=0.4, hue=0.2)
    for name in ("brightness", "contrast", "saturation", "hue"):
        assert getattr(jitter, name) == getattr(original, name), name
    assert crop.size == (224, 224) and (crop.scale, crop.ratio) == ((0.08, 1.0), (3 / 4, 4 / 3)) and flip.p == 0.5


def test_top5_counts_a_label_among_the_five_highest_logits():
    """A case where top-5 differs from top-1 and from 100%: labels ranked 1st, 3rd, 5th, 6th and
    10th of 10 classes, in batches of two and three."""
    from common.metrics import Stats

    ranked = torch.arange(10, 0, -1, dtype=torch.float32)  # class c ranks c+1st
    logits, y = ranked.repeat(5, 1), torch.tensor([0, 2, 4, 5, 9])
    top1, top5 = Stats(torch.device("cpu")), Stats(torch.device("cpu"), k=5)
    for part in (slice(0, 2), slice(2, 5)):
        for stats in (top1, top5):
            stats.add(logits[part], y[part], torch.tensor(1.0))
    assert top1.result() == (20.0, 1.0) and top5.result() == (60.0, 1.0)


@pytest.mark.parametrize("autocast, dtype", [("bf16", torch.bfloat16), ("fp16", torch.float16)])
def test_autocast_trains_in_half_precision(folder, autocast, dtype, monkeypatch):
    cfg = tiny_config(folder, "--autocast", autocast, "--fast")
    r = ImageNetRun(cfg, get_genotype("darts_pt_s5_0"), torch.device("cpu"), _one_process())
    seen = []
    monkeypatch.setattr(r, "criterion", lambda logits, y: seen.append(logits.dtype) or nn.functional.cross_entropy(
        logits.float(), y))
    before = [p.detach().clone() for p in r.net.parameters()]
    acc, loss = r.train_epoch(0, Progress(1, every_steps=1000, every_s=0.0))
    assert seen == [dtype] and all(p.dtype == torch.float32 for p in r.net.parameters())
    stepped = any(not torch.equal(a, p) for a, p in zip(before, r.net.parameters(), strict=True))
    # fp16: the gradient scaler skips a step whose gradients overflow, and lowers its scale
    assert stepped or (autocast == "fp16" and r.scaler.get_scale() < 2.0 ** 16)
    assert ("scaler" in r.state()) == (autocast == "fp16")  # fp16's loss scale is resumed with the run


def _one_process():
    from common.distributed import Group

    return Group()


# -- starting from the original's checkpoint (--load) ---------------------------------------------

def _original_checkpoint(folder: Path, epoch: int, parallel: bool = False) -> tuple[Path, nn.Module, dict]:
    """What the original's train_imagenet.py saved after `epoch` epochs (utils.save_checkpoint:
    checkpoint.pth.tar; `module.` names under --parallel's DataParallel), of the original's
    network, with momentum buffers of its SGD and the learning rate its StepLR left."""
    from tests.test_imagenet_model import RefNetworkImageNet

    torch.manual_seed(5)
    net = RefNetworkImageNet(8, len(CLASSES), 3, False, get_genotype("darts_pt_s5_0"))
    optimizer = torch.optim.SGD(net.parameters(), 0.1, momentum=0.9, weight_decay=3e-5)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, 1, gamma=0.97)
    for _ in range(epoch):
        for p in net.parameters():
            p.grad = torch.randn_like(p)
        optimizer.step()
        scheduler.step()
    weights = {("module." if parallel else "") + k: v for k, v in net.state_dict().items()}
    folder.mkdir(parents=True, exist_ok=True)
    torch.save({"epoch": epoch, "state_dict": weights, "best_acc_top1": torch.tensor(41.5),
                "optimizer": optimizer.state_dict()}, folder / "checkpoint.pth.tar")
    return folder / "checkpoint.pth.tar", net, optimizer.state_dict()


@pytest.mark.parametrize("parallel, lr", [(False, 0.1), (True, 0.2)])  # 0.2: fine-tuning at another rate
def test_load_takes_an_original_checkpoint_where_it_stopped(folder, tmp_path, parallel, lr):
    path, ref, ref_optimizer = _original_checkpoint(tmp_path / "EXP-orig", 2, parallel)
    for given in (path, path.parent):  # the file, or the original's run folder
        cfg = tiny_config(folder, "--epochs", "4", "--load", str(given), "--learning_rate", str(lr))
        r = ImageNetRun(cfg, get_genotype("darts_pt_s5_0"), torch.device("cpu"), _one_process())
        state = r.start_state()
        assert state == {"epoch": 2, "best_acc": 41.5, "loaded_from": str(path)}
        ours = r.net.state_dict()
        assert all(torch.equal(ours[k], v) for k, v in ref.state_dict().items())
        # each momentum buffer on the parameter of its name
        names = [n for n, _ in ref.named_parameters()]
        buffers = {n: r.optimizer.state[p]["momentum_buffer"] for n, p in r.net.named_parameters()}
        assert all(torch.equal(buffers[n], ref_optimizer["state"][i]["momentum_buffer"]) for i, n in enumerate(names))
        lrs = []
        for _ in range(2):  # epochs 2 and 3 at an uninterrupted run's learning rates
            lrs += [r.scheduler.get_last_lr()[0], r.optimizer.param_groups[0]["lr"]]
            r.optimizer.step()
            r.scheduler.step()
        assert lrs == pytest.approx([lr * 0.97 ** 2] * 2 + [lr * 0.97 ** 3] * 2)


@pytest.mark.parametrize("args, why", [
    (["--epochs", "2"], "it stopped at epoch 2: a run that starts there needs --epochs above it (now 2)"),
    (["--init_channels", "16"], "does not fit this network (check --arch, --init_channels, --layers and --auxiliary)"),
])
def test_load_refuses_what_cannot_continue(folder, tmp_path, args, why):
    path, _, _ = _original_checkpoint(tmp_path, 2)
    r = ImageNetRun(tiny_config(folder, "--load", str(path), *args), get_genotype("darts_pt_s5_0"),
                    torch.device("cpu"), _one_process())
    with pytest.raises(ConfigError) as e:
        r.start_state()
    assert str(e.value).startswith(f"--load {path}: {why}")


@pytest.mark.slow
def test_load_starts_a_new_run_from_the_original_checkpoint(folder, tmp_path):
    path, _, _ = _original_checkpoint(tmp_path / "EXP-orig", 2)
    exp = tmp_path / "exp"
    run_script("eval-imagenet.sh", "--data", str(folder), "--exp_root", str(exp), *TINY, "--no_auxiliary",
               "--epochs", "3", "--load", str(path.parent))
    out = exp / "sota" / "imagenet" / "eval" / "eval-darts_pt_s5_0-0"
    history = [json.loads(line) for line in (out / "history.jsonl").read_text().splitlines()]
    assert [h["epoch"] for h in history] == [2] and history[0]["lr"] == pytest.approx(0.1 * 0.97 ** 2)
    result = read_json(out / "result.json")
    assert result["status"] == "finished" and result["epochs_done"] == 3
    assert result["best_test_acc"] == max(41.5, history[0]["test_acc"])
    assert f"started at epoch 2 from {path} (--load)" in (out / "log.txt").read_text()
    assert checkpoint_epochs(out) == [3]


class _Counting(Group):
    """A group that keeps the images of the top-1 statistics it sums last: this process's."""

    seen = 0

    def result(self, stats):
        if stats.k == 1:
            _Counting.seen = stats.n
        return super().result(stats)


def _test_pass(rank: int, port: int, folder: str, out: str) -> None:
    """Process `rank` of two: the test pass of ImageNetRun.evaluate, a progress line each step."""
    import os

    torch.set_num_threads(1)
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WORLD_SIZE="2", RANK=str(rank),
                      LOCAL_RANK=str(rank))
    group = Group.start()
    torch.manual_seed(0)
    cfg = config(build_parser().parse_args(["--data", folder, *TINY, "--report_freq", "1"]), nproc=2)
    counting = _Counting(group.rank, group.size, group.local_rank)
    row = ImageNetRun(cfg, get_genotype("darts_pt_s5_0"), torch.device("cpu"), counting).evaluate()
    group.close()
    torch.save({"row": row, "seen": _Counting.seen}, f"{out}.{rank}")


def test_unequal_test_shares_meet_at_every_collective(folder, tmp_path):
    """5 validation images over two processes (shares of 3 and 2, batches of 2: two steps and
    one): both step through the same batches, the progress line of each step and the results
    meet, nothing waits (a time limit), and every image is counted once: two processes give one
    process's accuracy and loss."""
    import time

    root = tmp_path / "data"
    shutil.copytree(folder, root)
    next((root / "val" / CLASSES[-1]).iterdir()).unlink()
    _, val = open_splits(root, 64)
    assert len(val) == 5
    out = str(tmp_path / "pass.pt")
    context = torch.multiprocessing.spawn(_test_pass, args=(_free_port(), str(root), out), nprocs=2, join=False)
    deadline = time.monotonic() + 120
    while not context.join(timeout=max(deadline - time.monotonic(), 0.1)):
        if time.monotonic() > deadline:
            for process in context.processes:
                process.kill()
            pytest.fail("the two processes' test pass still ran after 120 s: a collective waits")
    two = [torch.load(f"{out}.{rank}", weights_only=False) for rank in range(2)]
    assert [p["seen"] for p in two] == [3, 2]
    torch.manual_seed(0)
    one = ImageNetRun(config(build_parser().parse_args(["--data", str(root), *TINY])), get_genotype("darts_pt_s5_0"),
                      torch.device("cpu"), _one_process()).evaluate()
    for p in two:
        assert p["row"]["test_acc"] == one["test_acc"] and p["row"]["test_acc_top5"] == one["test_acc_top5"]
        assert p["row"]["test_loss"] == pytest.approx(one["test_loss"], rel=1e-6)


# -- end to end (exp_scripts/eval-imagenet.sh) ---------------------------------------------------

@pytest.fixture(scope="module")
def run(folder, tmp_path_factory) -> tuple[list[str], Path]:
    """5 epochs, a checkpoint kept every 2."""
    exp = tmp_path_factory.mktemp("exp")
    env = ["--data", str(folder), "--exp_root", str(exp), *SCRIPT]
    run_script("eval-imagenet.sh", *env, "--epochs", "5", "--ckpt_keep_every", "2")
    return env, exp / "sota" / "imagenet" / "eval" / "eval-darts_pt_s5_0-0"


@pytest.mark.slow
def test_script_trains_reports_top5_and_keeps_few_checkpoints(run):
    _, out = run
    result = read_json(out / "result.json")
    assert result["status"] == "finished" and result["dataset"] == "imagenet" and result["epochs_done"] == 5
    assert result["genotype"] == genotype_to_dict(get_genotype("darts_pt_s5_0"))
    assert result["final_test_error_top5"] == pytest.approx(100 - result["final_test_acc_top5"])
    assert result["mult_adds_m"] > 0 and result["params_mb"] > 0
    history = [json.loads(line) for line in (out / "history.jsonl").read_text().splitlines()]
    assert [h["lr"] for h in history] == pytest.approx([0.1 * 0.97 ** e for e in range(5)])
    assert history[-1]["test_acc_top5"] == result["final_test_acc_top5"]
    assert checkpoint_epochs(out) == [2, 4, 5]
    net = NetworkImageNet(8, 3, 3, True, get_genotype("darts_pt_s5_0"))
    state = torch.load(out / "checkpoint_5.pth.tar", weights_only=True)
    assert {k: v.shape for k, v in state["state_dict"].items()} == {k: v.shape for k, v in net.state_dict().items()}
    best = torch.load(out / "model_best.pth.tar", weights_only=True)
    assert best["best_acc"] == result["best_test_acc"] == max(h["test_acc"] for h in history)
    assert history[best["epoch"] - 1]["test_acc"] == best["best_acc"]


@pytest.mark.slow
def test_bad_data_folder_fails_in_one_line_and_writes_nothing(tmp_path):
    msg = fails("eval-imagenet.sh", "--data", str(tmp_path / "nowhere"), "--exp_root", str(tmp_path / "exp"), *SCRIPT)
    assert f"error: --data {tmp_path / 'nowhere'}: folder not found" in msg
    assert not (tmp_path / "exp").exists()


@pytest.mark.slow
def test_kill_and_resume_matches_uninterrupted(run):
    env, out = run
    cut = out.parent / (out.name + "-cut")
    args = [*env, "--epochs", "5", "--ckpt_keep_every", "2", "--expid_tag", "cut"]
    kill_when("eval-imagenet.sh", args, cut / "checkpoint_3.pth.tar")
    for e in checkpoint_epochs(cut):
        if e > 3:  # as if the kill came right after checkpoint 3
            (cut / f"checkpoint_{e}.pth.tar").unlink()
    run_script("eval-imagenet.sh", *args, "--resume_epoch", "-1")
    ha, hb = ((f / "history.jsonl").read_text().splitlines() for f in (out, cut))
    assert ha == hb  # every epoch's losses and accuracies, to the last bit
    sa, sb = (torch.load(f / "checkpoint_5.pth.tar", weights_only=True)["state_dict"] for f in (out, cut))
    assert all(torch.equal(sa[k], sb[k]) for k in sa)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_processes_and_two_machines(folder, tmp_path):
    """--nproc 2 on one machine, and --nnodes 2 (one process each) meeting through the c10d
    rendezvous on localhost: both train every step on two shares of each batch of 4."""
    env = ["--data", str(folder), "--exp_root", str(tmp_path), *SCRIPT, "--epochs", "1"]
    run_script("eval-imagenet.sh", *env, "--nproc", "2", "--expid_tag", "p2")
    endpoint = f"localhost:{_free_port()}"
    nodes = [subprocess.Popen(["bash", str(REPO / "exp_scripts" / "eval-imagenet.sh"), *env, "--expid_tag", "n2",
                               "--nnodes", "2", "--node_rank", str(r), "--rdzv_endpoint", endpoint,
                               "--rdzv_id", "test"], cwd="/", env=_script_env(None), stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True) for r in range(2)]
    outputs = [p.communicate(timeout=300)[0] for p in nodes]
    assert [p.returncode for p in nodes] == [0, 0], outputs
    eval_dir = tmp_path / "sota" / "imagenet" / "eval"
    for tag in ("p2", "n2"):
        result = read_json(eval_dir / f"eval-darts_pt_s5_0-0-{tag}" / "result.json")
        assert result["status"] == "finished" and result["nproc"] == 2
    # the same processes, whether on one machine or two: the same training, to the bit
    a, b = ((eval_dir / f"eval-darts_pt_s5_0-0-{tag}" / "history.jsonl").read_text() for tag in ("p2", "n2"))
    assert a == b


@pytest.mark.slow
def test_multi_node_flags_are_checked_before_anything_runs(folder, tmp_path):
    env = ["--data", str(folder), "--exp_root", str(tmp_path / "exp"), *SCRIPT]
    assert "error: --rdzv_endpoint (none): --nnodes 2 needs HOST:PORT" in fails("eval-imagenet.sh", *env,
                                                                                "--nnodes", "2")
    assert "error: --node_rank 2: must be a whole number below --nnodes 2" in fails(
        "eval-imagenet.sh", *env, "--nnodes", "2", "--node_rank", "2", "--rdzv_endpoint", "localhost:1")
    assert not (tmp_path / "exp").exists()


def test_launch_is_standalone_on_one_machine_and_c10d_on_several():
    from common.launch import torchrun_argv

    assert torchrun_argv(["--nproc_per_node", "2", "-m", "x"]) == ["--standalone", "--nproc_per_node", "2", "-m", "x"]
    argv = ["--nproc_per_node", "8", "--nnodes", "2", "--rdzv_endpoint", "n1:29500", "--node_rank", "1", "-m", "x"]
    assert torchrun_argv(argv) == ["--rdzv_backend", "c10d", "--rdzv_conf", "is_host=false", "--nproc_per_node", "8",
                                   "--nnodes", "2", "--rdzv_endpoint", "n1:29500", "-m", "x"]
    assert "is_host=true" in torchrun_argv([*argv[:6], "--node_rank", "0", "-m", "x"])
