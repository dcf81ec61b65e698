"""DARTS space end to end through the real exp_scripts: search, two-stage projection, eval by name."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from sota.genotypes import genotype_from_string, get_genotype
from sota.spaces import NODE_EDGES
from tests.conftest import TEST_GPU, read_json, run_script
from tests.test_interrupt import hint, pasted

pytestmark = pytest.mark.slow  # end to end through the exp_scripts

# The DARTS supernet is heavy on a CPU even when tiny: few images, one batch per pass.
TINY = ["--batch_size", "16", "--init_channels", "4", "--layers", "3", "--report_freq", "100",
        "--gpu", TEST_GPU, "--no_tensorboard"]


@pytest.mark.parametrize("space,dataset,script", [("s3", "cifar10", "darts"), ("s4", "svhn", "sdarts-rs")])
def test_search_projection_eval(tmp_path, small_cifar10, small_svhn, space, dataset, script):
    data = str(small_cifar10 if dataset == "cifar10" else small_svhn)
    common = ["--data", data, "--exp_root", str(tmp_path), "--space", space, "--dataset", dataset, *TINY]
    out = run_script(f"{script}-sota.sh", *common, "--epochs", "2", "--ckpt_interval", "1").stdout
    folder = tmp_path / "sota" / dataset / f"search-{script}-sota-{space}-2"
    result = read_json(folder / "result.json")
    assert result["status"] == "finished" and result["space"] == space
    assert {p.name for p in folder.glob("checkpoint_*")} == {"checkpoint_1.pth.tar", "checkpoint_2.pth.tar"}

    # the command the search names projects it (the folders and checkpoint as it says; sizes from it)
    tiny = [*TINY[:2], *TINY[6:]]  # not its sizes: the projection takes them from the search run
    out = pasted(hint(out, "project it with"), "--proj_intv", "1", *tiny)
    proj = folder / f"{script}-proj-sota-seed2-acc-intv1-ep2"
    result = read_json(proj / "result.json")
    assert result["status"] == "finished"
    genotype = genotype_from_string(result["genotype"])
    # the registered genotype is the projected one, and eval scripts find it by name
    assert get_genotype(result["genotype_name"], tmp_path / "sota" / "genotypes") == genotype
    assert read_json(proj / "genotype.json")["name"] == result["genotype_name"]
    assert (proj / "genotype.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and (proj / "genotype.pdf").is_file()
    assert 0 < result["eval_size"]["params_mb"] < result["eval_size"]["params_mb_with_aux"]
    # after topology projection every node keeps exactly two incoming edges
    final = _final_weights(proj / "checkpoint_17.pth.tar")
    for kind in ("normal", "reduce"):
        for node, edges in NODE_EDGES.items():
            assert sum(bool(final[kind][e].any()) for e in edges) == 2, (kind, node)
        assert all(int((row != 0).sum()) <= 1 for row in final[kind])  # one op per kept edge

    # and the command the projection names evaluates its genotype (at a tiny size, one epoch)
    evaluate, eval_script = hint(out, "run it with"), {"cifar10": "eval.sh", "svhn": "eval-svhn.sh"}[dataset]
    assert evaluate.endswith(f"/{eval_script} --arch {result['genotype_name']} --exp_root {tmp_path} --data {data}")
    pasted(evaluate, "--init_channels", "4", "--layers", "3", "--batch_size", "16", "--epochs", "1",
           "--gpu", TEST_GPU, "--no_tensorboard", "--report_freq", "100")
    evaluated = read_json(tmp_path / "sota" / dataset / "eval" / f"eval-{result['genotype_name']}-2" / "result.json")
    assert evaluated["status"] == "finished" and evaluated["arch"] == result["genotype_name"]


def _final_weights(checkpoint: Path) -> dict[str, torch.Tensor]:
    from common.arch import Architecture

    state = torch.load(checkpoint, weights_only=True)
    arch = Architecture({k: tuple(v.shape) for k, v in state["projection"]["proj_weights"].items()})
    arch.load_projection_state(state["projection"])
    assert all(all(d) for d in state["projection"]["decided"].values())
    return arch.weights()


def test_interrupted_projection_resumes_to_same_genotype(tmp_path, small_svhn):
    common = ["--data", str(small_svhn), "--exp_root", str(tmp_path), "--space", "s4", "--dataset", "svhn",
              *TINY, "--fast"]
    run_script("darts-sota.sh", *common, "--epochs", "1")
    proj = [*common, "--resume_epoch", "1", "--proj_intv", "1"]
    run_script("darts-proj-sota.sh", *proj)
    folder = tmp_path / "sota" / "svhn" / "search-darts-sota-s4-2" / "darts-proj-sota-seed2-acc-intv1-ep1"
    uninterrupted = read_json(folder / "result.json")
    # interrupt it after tuning epoch 9: its later checkpoints and its result never happened
    # (the noise op draws from the global RNG, so the RNG state must be restored exactly)
    for e in range(10, 18):
        (folder / f"checkpoint_{e}.pth.tar").unlink()
    (folder / "result.json").write_text(json.dumps({**uninterrupted, "status": "running"}))
    out = run_script("darts-proj-sota.sh", *proj)
    assert "resumed projection at tuning epoch 9" in out.stdout
    resumed = read_json(folder / "result.json")
    assert resumed["genotype"] == uninterrupted["genotype"] and resumed["status"] == "finished"
    assert len((folder / "history.jsonl").read_text().splitlines()) == 17


def test_original_layout_checkpoint_projects(tmp_path, small_cifar10):
    """A DARTS-space supernet checkpoint as the original code saved it ('alpha': [normal, reduce])."""
    from sota.model_search import DartsSupernet

    model = DartsSupernet(4, 10, 3, "s3")
    alphas = [torch.nn.Parameter(1e-3 * torch.randn(14, 3)) for _ in range(2)]
    w_opt = torch.optim.SGD(model.parameters(), 0.025, momentum=0.9)
    folder = tmp_path / "sota" / "cifar10" / "search-original-s3"
    folder.mkdir(parents=True)
    torch.save({"epoch": 50, "state_dict": model.state_dict(), "alpha": alphas, "optimizer": w_opt.state_dict(),
                "arch_optimizer": torch.optim.Adam(alphas, 3e-4).state_dict(),
                "scheduler": torch.optim.lr_scheduler.CosineAnnealingLR(w_opt, 50.0).state_dict()},
               folder / "checkpoint_50.pth.tar")
    run_script("darts-proj-sota.sh", "--data", str(small_cifar10), "--exp_root", str(tmp_path), *TINY, "--fast",
               "--space", "s3", "--resume_expid", "search-original-s3", "--proj_intv", "1")
    result = read_json(folder / "darts-proj-sota-seed2-acc-intv1-ep50" / "result.json")
    assert result["status"] == "finished" and result["supernet_epoch"] == 50
