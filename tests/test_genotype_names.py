"""The name a DARTS-space projection registers its genotype under is checked before the
projection starts (and, in a study, before it is launched), not at its end."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from common.config import ConfigError
from common.run import main
from sota.genotypes import check_genotype_name, get_genotype, register_genotype
from sota.train_search import SEARCH_SPACE

ELSEWHERE = {"experiment": "/elsewhere/sota/cifar10/search-darts-sota-s3-9/darts-proj-sota-seed9-acc-intv5-ep2"}


def test_a_name_is_free_unless_built_in_or_another_runs(tmp_path):
    mine = tmp_path / "exp" / "sota" / "cifar10" / "search-darts-sota-s3-1" / "darts-proj-sota-seed1-acc-intv5-ep2"
    check_genotype_name("first", tmp_path, mine)
    register_genotype("first", get_genotype("darts_pt_s3_1"), tmp_path, ELSEWHERE)
    with pytest.raises(ValueError, match=r"'first' is taken by the genotype of /elsewhere/.*first\.json\); choose "
                                         r"another name, or remove .*first\.json to reuse it"):
        check_genotype_name("first", tmp_path, mine)
    with pytest.raises(ValueError, match="'DARTS_V2' is a built-in genotype's"):
        check_genotype_name("DARTS_V2", tmp_path, mine)
    with pytest.raises(ValueError, match="invalid genotype name"):
        check_genotype_name("../first", tmp_path, mine)
    # the run's own entry (resumed, or moved with its experiments folder) is free to it
    moved = Path("/moved") / Path(ELSEWHERE["experiment"]).relative_to("/elsewhere")
    check_genotype_name("first", tmp_path, moved)


def test_a_redone_projection_replaces_its_own_entry(tmp_path):
    register_genotype("first", get_genotype("darts_pt_s3_1"), tmp_path, ELSEWHERE)
    with pytest.raises(ValueError, match="taken by a different genotype"):
        register_genotype("first", get_genotype("DARTS_V2"), tmp_path, {"experiment": "/other/a/b/c"})
    register_genotype("first", get_genotype("DARTS_V2"), tmp_path, ELSEWHERE)  # --overwrite: a new genotype
    assert get_genotype("first", tmp_path) == get_genotype("DARTS_V2")


def fake_search(exp: Path, name: str = "search-darts-sota-s3-1") -> Path:
    """A finished DARTS-space search with its final checkpoint (what a projection resolves)."""
    folder = exp / "sota" / "cifar10" / name
    folder.mkdir(parents=True)
    (folder / "checkpoint_2.pth.tar").write_bytes(b"")
    (folder / "result.json").write_text(json.dumps({"status": "finished", "space": "s3", "dataset": "cifar10",
                                                    "epochs": 2, "init_channels": 4, "layers": 3}))
    return folder


def test_a_taken_name_is_refused_before_the_projection_loads_anything(tmp_path, capsys):
    search = fake_search(tmp_path)  # its checkpoint is empty: loading it would fail otherwise
    register_genotype("first", get_genotype("darts_pt_s3_1"), tmp_path / "sota" / "genotypes", ELSEWHERE)
    argv = ["--method", "darts-proj", "--save", "darts-proj-sota", "--exp_root", str(tmp_path), "--gpu", "cpu",
            "--resume_expid", search.name, "--resume_epoch", "-1", "--seed", "1"]
    assert main(SEARCH_SPACE, [*argv, "--genotype_name", "first"]) == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and errors[0].startswith("error: --genotype_name first: genotype name 'first' is taken")
    assert sorted(p.name for p in search.iterdir()) == ["checkpoint_2.pth.tar", "result.json"]  # nothing written
    # the default name (dataset, search and projection folders) is checked alike
    default = f"cifar10_{search.name}_darts-proj-sota-seed1-acc-intv5-ep2"
    register_genotype(default, get_genotype("darts_pt_s3_1"), tmp_path / "sota" / "genotypes", ELSEWHERE)
    with pytest.raises(ConfigError, match=f"--genotype_name {default}: .* is taken"):
        SEARCH_SPACE.check_projection(SEARCH_SPACE.config(SEARCH_SPACE.parser().parse_args(argv)),
                                      search / "darts-proj-sota-seed1-acc-intv5-ep2")


def test_a_study_refuses_the_projection_before_launching_it(tmp_path):
    from study.flags import RunFlags
    from study.plan import Context, PlanError, Run, launch_command

    ctx = Context(tmp_path, RunFlags.parse(["--epochs", "2"]))
    exp = tmp_path / "runs"
    search = fake_search(exp)
    proj = Run("s3", "cifar10", "darts", 1, "proj")
    assert "--resume_expid" in launch_command(proj, ctx)  # the name is free
    name = f"cifar10_{search.name}_darts-proj-sota-seed1-acc-intv5-ep2"
    register_genotype(name, get_genotype("darts_pt_s3_1"), exp / "sota" / "genotypes", ELSEWHERE)
    with pytest.raises(PlanError, match=f"^s3-cifar10-darts-seed1-proj: --genotype_name {name}: .* is taken"):
        launch_command(proj, ctx)
