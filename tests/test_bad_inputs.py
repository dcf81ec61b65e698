"""Bad inputs through the real exp_scripts: refused before anything is written.

Each case must end with a non-zero exit code, exactly one `error:` line that names the
offending flag, no traceback, and not a byte created or changed under the experiments
folder (nor the data folder).
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from sota.genotypes import get_genotype, register_genotype
from tests.conftest import TEST_GPU, run_script

pytestmark = pytest.mark.slow

NB = ["--batch_size", "16", "--init_channels", "4", "--num_cells", "1", "--report_freq", "100", "--no_tensorboard"]
DARTS = ["--batch_size", "16", "--init_channels", "4", "--layers", "3", "--report_freq", "100", "--no_tensorboard"]
EVAL = ["--batch_size", "16", "--init_channels", "4", "--layers", "3", "--report_freq", "100", "--no_tensorboard"]

# (script, arguments, the flag the message must name)
CASES = [
    ("darts-201.sh", ["--epochs", "0"], "epochs"),
    ("darts-201.sh", ["--epochs", "-3"], "epochs"),
    ("darts-201.sh", ["--epochs", "abc"], "epochs"),
    ("darts-201.sh", ["--train_portion", "1.5"], "train_portion"),
    ("darts-201.sh", ["--train_portion", "0"], "train_portion"),
    ("darts-201.sh", ["--init_channels", "0"], "init_channels"),
    ("darts-201.sh", ["--report_freq", "0"], "report_freq"),
    ("darts-201.sh", ["--report_secs", "-1"], "report_secs"),
    ("darts-201.sh", ["--ckpt_interval", "0"], "ckpt_interval"),
    ("darts-201.sh", ["--batch_size", "0"], "batch_size"),
    ("darts-201.sh", ["--learning_rate", "0"], "learning_rate"),
    ("darts-201.sh", ["--learning_rate", "nan"], "learning_rate"),
    ("darts-201.sh", ["--learning_rate_min", "-1"], "learning_rate_min"),
    ("darts-201.sh", ["--momentum", "-0.1"], "momentum"),
    ("darts-201.sh", ["--weight_decay", "inf"], "weight_decay"),
    ("darts-201.sh", ["--arch_learning_rate", "0"], "arch_learning_rate"),
    ("darts-201.sh", ["--arch_weight_decay", "-1"], "arch_weight_decay"),
    ("darts-201.sh", ["--grad_clip", "0"], "grad_clip"),
    ("darts-201.sh", ["--cutout", "--cutout_prob", "2"], "cutout_prob"),
    ("darts-201.sh", ["--cutout", "--cutout_length", "-1"], "cutout_length"),
    ("darts-201.sh", ["--num_cells", "0"], "num_cells"),
    ("darts-201.sh", ["--method", "sdarts"], "method"),  # no SDARTS on NAS-Bench-201 in the original
    ("darts-201.sh", ["--dataset", "mnist"], "dataset"),
    ("darts-201.sh", ["--gpu", "7"], "gpu"),
    ("darts-201.sh", ["--dataset", "imagefolder", "--image_size", "4"], "image_size"),
    ("darts-201.sh", ["--seed", "-1"], "seed"),
    ("darts-201.sh", ["--sampling", "random"], "sampling"),
    ("darts-201.sh", ["--memory_format", "nhwc"], "memory_format"),
    ("darts-201.sh", ["--dev", "foo"], "dev"),
    ("darts-201.sh", ["--seed", "9", "--resume_epoch", "5"], "resume_epoch"),      # no such run
    ("darts-201.sh", ["--seed", "1", "--resume_epoch", "5"], "resume_epoch"),      # no such checkpoint
    ("darts-proj-201.sh", ["--proj_intv", "0"], "proj_intv"),
    ("darts-proj-201.sh", ["--proj_batch_size", "-1"], "proj_batch_size"),
    ("darts-proj-201.sh", ["--resume_expid", "search-nope-1"], "resume_expid"),
    ("darts-proj-201.sh", ["--resume_epoch", "7"], "resume_epoch"),
    ("darts-proj-201.sh", ["--proj_crit", "best"], "proj_crit"),
    ("darts-sota.sh", ["--layers", "1"], "layers"),
    ("darts-sota.sh", ["--layers", "2"], "layers"),  # cells 0 and 1 would both reduce: no normal cell
    ("darts-sota.sh", ["--space", "s9"], "space"),
    ("blank-201.sh", ["--unrolled"], "unrolled"),                       # fix-alpha has no alpha step
    ("blank-sota.sh", ["--unrolled"], "unrolled"),
    ("darts-sota.sh", ["--perturb_alpha", "random"], "perturb_alpha"),   # a perturbation is SDARTS
    ("sdarts-rs-sota.sh", ["--perturb_alpha", "none"], "method"),       # SDARTS needs a perturbation
    ("sdarts-rs-sota.sh", ["--epsilon_alpha", "-0.1"], "epsilon_alpha"),
    ("darts-proj-sota.sh", ["--proj_crit_normal", "best"], "proj_crit_normal"),
    ("darts-proj-sota.sh", ["--space", "s3", "--resume_expid", "search-darts-sota-s5-2"], "space"),
    ("darts-proj-sota.sh", ["--init_channels", "8"], "init_channels"),  # the search run says 4
    ("darts-proj-sota.sh", ["--genotype_name", "DARTS_V2"], "genotype_name"),   # a built-in genotype's
    ("darts-proj-sota.sh", ["--genotype_name", "taken"], "genotype_name"),      # another run's
    ("darts-201.sh", ["--reg_type", "kl"], "reg_type"),                 # the KL regulariser is DrNAS'
    ("darts-sota.sh", ["--reg_type", "kl"], "reg_type"),
    ("darts-201.sh", ["--k", "2"], "k"),                                # partial channels are DrNAS'
    ("drnas-201.sh", ["--stages", "4:5:1,2:3:1"], "stages"),            # 2 epochs of stages, --epochs 1
    ("drnas-sota.sh", ["--stages", "2:7:1,1:4:1"], "stages"),
    ("drnas-201.sh", ["--stages", "4:5"], "stages"),
    ("drnas-201.sh", ["--k", "3"], "k"),                                # 3 does not divide 4 channels
    ("drnas-201.sh", ["--stages", "1:5:1,8:3:1", "--epochs", "2"], "stages"),  # nor 8 (the second stage)
    ("drnas-sota.sh", ["--stages", "3:7:1"], "stages"),
    ("drnas-201.sh", ["--k", "2", "--stages", "4:5:1"], "k"),
    ("drnas-201.sh", ["--arch_weight_decay", "0.01"], "arch_weight_decay"),  # DrNAS' is --reg_scale
    ("pcdarts-201.sh", ["--k", "3"], "k"),                              # 3 does not divide 4 channels
    ("pcdarts-sota.sh", ["--k", "3", "--arch_start_epoch", "0"], "k"),
    ("pcdarts-201.sh", ["--arch_start_epoch", "1"], "arch_start_epoch"),  # alpha would never train (--epochs 1)
    ("pcdarts-sota.sh", ["--epochs", "10"], "arch_start_epoch"),          # the script's 15 is past 10 epochs
    ("darts-sota.sh", ["--arch_start_epoch", "3"], "arch_start_epoch"),   # the warm-up is PC-DARTS'
    ("eval.sh", ["--arch", "no_such_genotype"], "arch"),
    ("eval.sh", ["--drop_path_prob", "1"], "drop_path_prob"),
    ("eval.sh", ["--epochs", "0"], "epochs"),
    ("eval.sh", ["--layers", "1"], "layers"),
    ("eval.sh", ["--layers", "2"], "layers"),
    ("eval.sh", ["--auxiliary_weight", "-1"], "auxiliary_weight"),
    ("eval.sh", ["--batch_size", "0"], "batch_size"),
    ("eval.sh", ["--dataset", "imagefolder", "--image_size", "16"], "image_size"),  # the auxiliary head
    ("eval.sh", ["--resume_epoch", "3"], "resume_epoch"),
]


def tree(folder: Path) -> dict[str, str]:
    """Every path below `folder`, with a digest of each file's bytes ('dir' for folders)."""
    return {str(p.relative_to(folder)): "dir" if p.is_dir() else hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*"))}


@pytest.fixture(scope="module")
def world(tmp_path_factory, cifar10_dir) -> dict[str, Path]:
    """An experiments folder holding a finished NAS-Bench-201 search and a DARTS-space one."""
    exp = tmp_path_factory.mktemp("exp")
    common = ["--data", str(cifar10_dir), "--exp_root", str(exp), "--gpu", TEST_GPU, "--epochs", "1"]
    run_script("darts-201.sh", *common, *NB)
    run_script("darts-sota.sh", *common, *DARTS)
    register_genotype("taken", get_genotype("DARTS_V2"), exp / "sota" / "genotypes",
                      {"experiment": "/elsewhere/sota/cifar10/search-x/proj-y"})
    return {"exp": exp, "data": cifar10_dir}


@pytest.mark.parametrize("script,args,flag", CASES, ids=[f"{s}:{' '.join(a)}" for s, a, _ in CASES])
def test_bad_input_is_refused_before_anything_is_written(world, script: str, args: list[str], flag: str):
    sizes = {"eval.sh": EVAL, "darts-sota.sh": DARTS, "sdarts-rs-sota.sh": DARTS, "darts-proj-sota.sh": DARTS,
             "blank-sota.sh": DARTS, "drnas-sota.sh": DARTS, "pcdarts-sota.sh": DARTS}
    base = ["--data", str(world["data"]), "--exp_root", str(world["exp"]), "--gpu", TEST_GPU, "--epochs", "1",
            *sizes.get(script, NB)]
    if "-proj-" in script:
        base += ["--resume_epoch", "1"]
    before = tree(world["exp"]), tree(world["data"])
    proc = run_script(script, *base, *args, check=False)
    out = proc.stdout + proc.stderr
    errors = [line for line in out.splitlines() if line.startswith("error:")]
    assert proc.returncode != 0, out[-3000:]
    assert "Traceback" not in out, out[-3000:]
    assert len(errors) == 1 and f"--{flag}" in errors[0], out[-3000:]
    assert (tree(world["exp"]), tree(world["data"])) == before


def test_enough_cases():
    assert len(CASES) >= 25 and {s for s, _, _ in CASES} >= {"darts-201.sh", "darts-proj-201.sh", "darts-sota.sh",
                                                             "darts-proj-sota.sh", "eval.sh"}
