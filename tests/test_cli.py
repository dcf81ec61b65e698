"""The command line: flags spelt out, "did you mean", --help, and what a projection takes from
the search run it projects (sizes, dataset, space, the search-epoch target) or refuses."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from common.config import ConfigError
from common.run import projection_target, resolve_projection
from nasbench201 import train_search as nb201
from sota import train as sota_eval
from sota import train_search as sota
from tests.fixtures.configs import search_cfg


def refusal(parser, argv: list[str], capsys) -> str:
    with pytest.raises(SystemExit) as e:
        parser.parse_args(argv)
    assert e.value.code == 2
    return capsys.readouterr().err


# -- flags --------------------------------------------------------------------------------------

def test_abbreviated_flag_is_refused_with_the_close_matches(capsys):
    err = refusal(nb201.build_parser(), ["--epoch", "2"], capsys)
    assert err.count("\n") == 1 and err.startswith("error: --epoch: no such flag (did you mean --epochs")


@pytest.mark.parametrize("build,flag,meant", [(sota.build_parser, "--layer=3", "--layers"),
                                              (sota_eval.build_parser, "--auxilary", "--auxiliary"),
                                              (nb201.build_parser, "--proj-crit", "--proj_crit")])
def test_unknown_flag_says_did_you_mean_in_every_entry_point(build, flag, meant, capsys):
    err = refusal(build(), [flag], capsys)
    assert err.startswith(f"error: {flag.split('=')[0]}: no such flag (did you mean {meant}")


@pytest.mark.parametrize("argv, said", [
    (["--epoch", "2"], "unknown run flag --epoch: not a flag of any exp_script (did you mean --epochs?)"),
    (["--eval.epoch", "2"], "unknown run flag --eval.epoch: not a flag of the eval scripts (did you mean "
                            "--eval.epochs?)"),
    (["--stage", "search"], "(did you mean --stages?)"),  # the study's own flag
])
def test_a_study_says_did_you_mean_as_the_scripts(argv, said):
    from study.config import StudyError, parse_config

    with pytest.raises(StudyError) as e:
        parse_config(["--name", "s", *argv])
    assert str(e.value).endswith(said)


def test_unknown_flag_without_a_close_one(capsys):
    assert refusal(nb201.build_parser(), ["--zzz", "1"], capsys) == "error: --zzz: no such flag; see --help\n"


def test_help_shows_every_default_and_one_data_group():
    text = " ".join(sota.build_parser().format_help().split())
    assert text.count("data:") == 1
    assert "--learning_rate LEARNING_RATE (default: 0.025)" in text       # a flag without help text
    assert "--train_portion TRAIN_PORTION first part" in text.split("data:")[1].split("supernet training:")[0]
    assert "(default: 50; a projection's: the search run's)" in text     # --epochs
    assert "(default: None)" not in text


@pytest.mark.parametrize("module", ["nasbench201.train_search", "sota.train_search", "sota.train",
                                    "sota.train_imagenet"])
def test_help_lists_the_launcher_flags_the_module_does_not_read(module, capsys):
    """--nproc, --nnodes, --node_rank, --rdzv_endpoint and --rdzv_id are the exp_scripts' own
    (exp_scripts/common.sh): listed in --help; a module given them by hand checks that its
    torchrun has that size, here one process."""
    import importlib

    from common.cli import LAUNCHER_FLAGS, parse_config

    entry = importlib.import_module(module)
    text = entry.build_parser().format_help()
    assert all(f"{flag} " in text for flag in LAUNCHER_FLAGS) and "processes and machines" in text
    to_config = getattr(entry, "SEARCH_SPACE", entry).config
    parse_config(entry.build_parser(), to_config, ["--nproc", "1", "--nnodes", "1", "--rdzv_id", "x"], processes=1)
    with pytest.raises(SystemExit):
        parse_config(entry.build_parser(), to_config, ["--nproc", "2"], processes=1)
    assert capsys.readouterr().err.startswith("error: --nproc 2: this process runs in a group of 1 process(es)")


def test_a_study_sets_the_machines_itself():
    from study.config import StudyError, parse_config

    with pytest.raises(StudyError, match="--nnodes is set by the study for each job"):
        parse_config(["--name", "s", "--nnodes", "2"])
    assert parse_config(["--name", "s", "--nproc", "2"]).run_flags.argv() == ["--nproc", "2"]


def test_a_command_can_undo_the_switches_its_script_turns_on():
    """eval.sh and eval-imagenet.sh pass --auxiliary (and eval.sh --cutout) before the user's flags."""
    from sota import train_imagenet

    script = ["--auxiliary", "--cutout"]
    on = sota_eval.build_parser().parse_args(script)
    assert (on.auxiliary, on.cutout) == (True, True)
    undone = sota_eval.build_parser().parse_args([*script, "--no_auxiliary", "--no_cutout"])
    assert (undone.auxiliary, undone.cutout) == (False, False)
    args = ["--auxiliary", "--image_size", "64", "--data", "/nonexistent"]
    with pytest.raises(ConfigError, match="pass --image_size 224 or pass --no_auxiliary"):
        train_imagenet.config(train_imagenet.build_parser().parse_args(args))
    assert not train_imagenet.config(train_imagenet.build_parser().parse_args([*args, "--no_auxiliary"])).auxiliary


@pytest.mark.parametrize("module", [sota, sota_eval])
def test_darts_space_networks_need_a_normal_cell(module):
    """Cells layers//3 and 2*layers//3 reduce: with 2 layers both do, so 3 is the least."""
    with pytest.raises(ConfigError, match=r"^--layers 2: must be at least 3: cells layers//3 and 2\*layers//3 "
                                          r"\(0 and 1\) are reduction cells"):
        module.config(module.build_parser().parse_args(["--layers", "2"]))
    assert module.config(module.build_parser().parse_args(["--layers", "3"])).run.seed == 2


def test_the_log_shows_the_config_where_it_differs_and_config_json_all_of_it(tmp_path, log_lines):
    from common.experiment import record_config

    cfg = search_cfg("--epochs", "2", "--space", "s3", "--layers", "5", "--expid_tag", "two words", space="sota")
    record_config(cfg, search_cfg(space="sota"), tmp_path)
    assert log_lines == [f"config, where it differs from the defaults (all of it: {tmp_path / 'config.json'}):\n"
                         "  epochs=2 expid_tag='two words' space=s3 layers=5"]
    written = json.loads((tmp_path / "config.json").read_text())
    assert written["config"] == "SearchConfig" and written["space"]["layers"] == 5 and written["epochs"] == 2
    assert written["optim"]["learning_rate"] == 0.025 and written["data"]["data"] == str(cfg.data.data)
    assert written["from_search_run"] == sorted(cfg.from_search_run)
    record_config(cfg, cfg, tmp_path, main=False)  # another process: logs only
    assert log_lines[-1].endswith("\n  (none)")


def test_flags_a_projection_takes_from_the_search_run_are_known_to_be_left_out():
    cfg = search_cfg("--epochs", "7", space="nb201")
    assert (cfg.epochs, cfg.init_channels, cfg.space.num_cells, cfg.data.dataset) == (7, 16, 5, "cifar10")
    assert set(cfg.search_run_flags) == {"dataset", "epochs", "init_channels", "num_cells", "unrolled"}
    assert cfg.from_search_run == {"dataset", "init_channels", "num_cells", "unrolled"}
    cfg = search_cfg("--layers", "5", "--unrolled", space="sota")
    assert cfg.from_search_run == {"dataset", "epochs", "init_channels", "space"} and cfg.epochs == 50
    assert cfg.alpha.unrolled


@pytest.mark.parametrize("flags,expected", [
    ([], ("acc", "acc", "acc")),
    (["--crit", "loss"], ("loss", "loss", "loss")),
    (["--crit", "loss", "--proj_crit_edge", "acc"], ("loss", "loss", "acc")),
    (["--proj_crit_reduce", "loss"], ("acc", "loss", "acc")),
])
def test_crit_sets_the_three_criteria_as_the_original_script(flags, expected):
    o = search_cfg(*flags, space="sota").space
    assert (o.proj_crit_normal, o.proj_crit_reduce, o.proj_crit_edge) == expected


# -- what a projection takes from its search run --------------------------------------------------

def search_run(folder: Path, checkpoints: list[int], result: dict | None = None) -> Path:
    """A search folder holding (empty) checkpoints of those epochs and a result.json."""
    folder.mkdir(parents=True)
    for e in checkpoints:
        (folder / f"checkpoint_{e}.pth.tar").touch()
    if result:
        (folder / "result.json").write_text(json.dumps(result))
    return folder


NB201_RUN = dict(status="finished", space="nasbench201", dataset="cifar10", epochs=2, epochs_done=2,
                 init_channels=4, num_cells=1)
SOTA_RUN = dict(status="finished", space="s3", dataset="cifar100", epochs=3, epochs_done=3, init_channels=4,
                layers=5)


def nb201_projection(exp: Path, *flags: str):
    cfg = search_cfg("--method", "darts-proj", "--save", "darts-proj-201", "--exp_root", str(exp), *flags)
    return resolve_projection(cfg, nb201.SEARCH_SPACE)


@pytest.mark.parametrize("trained_by", ["drnas", "gdas", "pcdarts", "blank"])
def test_a_supernet_is_projected_by_the_method_that_trained_it(tmp_path, trained_by):
    """darts-proj of a supernet another method trained (its mixing weights, its steps, its
    checkpoint) is refused in one line that names the projection to run; the same method is taken."""
    search_run(tmp_path / "nasbench201" / "search-x", [2], {**NB201_RUN, "method": trained_by})
    with pytest.raises(ConfigError) as e:
        nb201_projection(tmp_path, "--resume_expid", "search-x")
    assert e.value.flag == "method" and "\n" not in str(e.value)
    assert f"was trained with --method {trained_by}: project it with --method {trained_by}-proj" in str(e.value)
    search_run(tmp_path / "nasbench201" / "search-y", [2], {**NB201_RUN, "method": "darts"})
    assert nb201_projection(tmp_path, "--resume_expid", "search-y").epoch == 2


def test_projection_of_a_finished_search_takes_its_sizes_and_projects_it_as_it_is(tmp_path):
    search = search_run(tmp_path / "nasbench201" / "search-darts-201-1", [1, 2], NB201_RUN)
    p = nb201_projection(tmp_path, "--resume_epoch", "2")
    assert (p.cfg.epochs, p.cfg.init_channels, p.cfg.space.num_cells, p.cfg.data.dataset) == (2, 4, 1, "cifar10")
    assert p.taken == {"dataset": "cifar10", "epochs": 2, "init_channels": 4, "num_cells": 1}
    assert p.folder == search / "darts-proj-201-seed1-acc-intv5-ep2"


def test_the_search_epoch_target_is_in_the_projection_folder_name(tmp_path):
    search = search_run(tmp_path / "nasbench201" / "search-darts-201-1", [1, 2], NB201_RUN)
    # an earlier checkpoint trains up to the search's own epochs first, as the original
    assert nb201_projection(tmp_path, "--resume_epoch", "1").folder.name == "darts-proj-201-seed1-acc-intv5-ep1-to2"
    p = nb201_projection(tmp_path, "--resume_epoch", "-1", "--epochs", "100")
    assert p.cfg.epochs == 100 and p.folder == search / "darts-proj-201-seed1-acc-intv5-ep2-to100"
    with pytest.raises(ConfigError, match="--epochs 1: below the supernet checkpoint's epoch 2") as e:
        nb201_projection(tmp_path, "--resume_epoch", "2", "--epochs", "1")
    assert e.value.flag == "epochs"


def test_a_search_that_records_no_sizes_keeps_the_flags(tmp_path):
    """Runs of the original code (no result.json): the flags' values, defaults included."""
    search_run(tmp_path / "nasbench201" / "search-old-1", [100])
    p = nb201_projection(tmp_path, "--resume_expid", "search-old-1", "--resume_epoch", "100", "--num_cells", "2")
    assert p.taken == {} and (p.cfg.epochs, p.cfg.init_channels, p.cfg.space.num_cells) == (100, 16, 2)
    assert p.folder.name.endswith("-ep100")


@pytest.mark.parametrize("flags,flag", [(["--init_channels", "8"], "init_channels"),
                                        (["--num_cells", "5"], "num_cells"), (["--dataset", "cifar100"], "dataset")])
def test_a_flag_that_contradicts_the_search_run_is_one_line(tmp_path, flags, flag):
    search_run(tmp_path / "nasbench201" / "search-x", [2], NB201_RUN)
    with pytest.raises(ConfigError) as e:
        nb201_projection(tmp_path, "--resume_expid", "search-x", "--resume_epoch", "2", *flags)
    assert e.value.flag == flag and "searched with" in str(e.value) and "\n" not in str(e.value)


def test_a_search_of_another_space_is_refused(tmp_path):
    search_run(tmp_path / "nasbench201" / "search-x", [2], {**NB201_RUN, "space": "s3"})
    with pytest.raises(ConfigError, match="space s3") as e:
        nb201_projection(tmp_path, "--resume_expid", "search-x", "--resume_epoch", "2")
    assert e.value.flag == "resume_expid"


def sota_projection(exp: Path, *flags: str):
    cfg = search_cfg("--method", "darts-proj", "--save", "darts-proj-sota", "--exp_root", str(exp), *flags,
                     space="sota")
    return resolve_projection(cfg, sota.SEARCH_SPACE)


def test_dataset_space_and_layers_come_from_the_search_run(tmp_path):
    """A bare folder name is looked for in every dataset's folder when --dataset is left out."""
    search = search_run(tmp_path / "sota" / "cifar100" / "search-darts-sota-s3-2", [3], SOTA_RUN)
    p = sota_projection(tmp_path, "--resume_expid", "search-darts-sota-s3-2", "--resume_epoch", "3")
    assert (p.cfg.data.dataset, p.cfg.space.space, p.cfg.space.layers, p.cfg.init_channels) == ("cifar100", "s3", 5, 4)
    assert p.search == search and p.folder.name == "darts-proj-sota-seed2-acc-intv5-ep3"
    with pytest.raises(ConfigError) as e:
        sota_projection(tmp_path, "--resume_expid", "search-darts-sota-s3-2", "--resume_epoch", "3", "--space", "s5")
    assert e.value.flag == "space"


def test_resume_expid_takes_a_path(tmp_path, monkeypatch):
    search = search_run(tmp_path / "elsewhere" / "my-search", [3], SOTA_RUN)
    assert sota_projection(tmp_path / "exp", "--resume_expid", str(search), "--resume_epoch", "-1").search == search
    monkeypatch.chdir(tmp_path)
    assert sota_projection(tmp_path / "exp", "--resume_expid", "elsewhere/my-search",
                           "--resume_epoch", "3").search == search
    monkeypatch.chdir(search.parent)
    assert sota_projection(tmp_path / "exp", "--resume_expid", "./my-search", "--resume_epoch", "3").search == search
    with pytest.raises(ConfigError, match="does not exist") as e:
        sota_projection(tmp_path / "exp", "--resume_expid", "elsewhere/nope", "--resume_epoch", "3")
    assert e.value.flag == "resume_expid"


def test_a_missing_search_folder_names_those_that_exist(tmp_path):
    for name in ("search-darts-201-1", "search-darts-201-2", "search-blank-201-1"):
        search_run(tmp_path / "nasbench201" / name, [2], NB201_RUN)
    with pytest.raises(ConfigError, match="did you mean search-darts-201-2"):
        nb201_projection(tmp_path, "--resume_expid", "search-darts-201-3", "--resume_epoch", "2")
    with pytest.raises(ConfigError, match="the search runs there: search-blank-201-1, search-darts-201-1, "
                                          "search-darts-201-2"):
        nb201_projection(tmp_path, "--resume_expid", "mine", "--resume_epoch", "2")


def test_the_first_lines_say_what_the_projection_will_do(tmp_path, log_lines):
    search_run(tmp_path / "nasbench201" / "search-darts-201-1", [1, 2], NB201_RUN)
    cfg = search_cfg("--method", "darts-proj", "--save", "darts-proj-201", "--exp_root", str(tmp_path),
                     "--resume_epoch", "1")
    cfg, target = projection_target(cfg, nb201.SEARCH_SPACE)
    assert cfg.epochs == 2 and target.folder.name.endswith("-ep1-to2")
    assert "checkpoint_1.pth.tar (search epoch 1: given) after training the supernet 1 more search epochs, up to " \
           "--epochs 2 (the search run's); pass --epochs 1 to project it as it is" in log_lines[0]
    assert log_lines[1] == ("taken from the search run's result.json: --dataset cifar10 --epochs 2 "
                            "--init_channels 4 --num_cells 1")


@pytest.mark.slow
def test_darts_space_projection_needs_no_size_flags(tmp_path, small_svhn):
    """End to end: the projection builds the supernet the search run's result.json describes
    (space, dataset, cells, channels) without being told; a run that records none is refused in
    one line naming the flags."""
    from tests.conftest import TEST_GPU, fails, read_json, run_script

    run = ["--data", str(small_svhn), "--exp_root", str(tmp_path), "--batch_size", "16", "--gpu", TEST_GPU,
           "--no_tensorboard", "--fast"]
    run_script("darts-sota.sh", *run, "--space", "s3", "--dataset", "svhn", "--layers", "3", "--init_channels", "4",
               "--epochs", "1")
    search = tmp_path / "sota" / "svhn" / "search-darts-sota-s3-2"
    proj = ["--resume_expid", "search-darts-sota-s3-2", "--resume_epoch", "1", "--proj_intv", "1"]
    run_script("darts-proj-sota.sh", *run, *proj)
    result = read_json(search / "darts-proj-sota-seed2-acc-intv1-ep1" / "result.json")
    assert result["status"] == "finished" and (result["space"], result["dataset"]) == ("s3", "svhn")
    assert (result["layers"], result["init_channels"]) == (3, 4)

    recorded = read_json(search / "result.json")
    (search / "result.json").write_text(json.dumps({k: v for k, v in recorded.items()
                                                    if k not in ("layers", "init_channels")}))
    out = fails("darts-proj-sota.sh", *run, *proj, "--log_tag", "old", "--dataset", "svhn", "--space", "s3")
    errors = [line for line in out.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "does not fit" in errors[0] and "--init_channels --space --layers" in errors[0]
    assert len(errors[0]) < 600


def test_the_log_names_the_defaults_a_search_run_does_not_record(tmp_path, log_lines):
    search_run(tmp_path / "nasbench201" / "search-darts-201-1", [2], {"status": "finished", "epochs": 2})
    cfg = search_cfg("--method", "darts-proj", "--save", "darts-proj-201", "--exp_root", str(tmp_path),
                     "--resume_epoch", "2", "--num_cells", "3")
    projection_target(cfg, nb201.SEARCH_SPACE)
    assert "as it is (search epoch 2: given; --epochs 2: the search run's)" in log_lines[0]
    assert log_lines[1:] == ["taken from the search run's result.json: --epochs 2",
                             "not recorded by the search run, so the defaults: --dataset cifar10 --init_channels 16 "
                             "--unrolled False"]


# -- which checkpoint, of which search run: never a search that has not finished ----------------

def live_search(folder: Path, checkpoints: list[int], alive: bool = True) -> Path:
    """A search run at epoch max(checkpoints) of 40 whose result.json says `running`, with the process
    record of this (live) process, or of one that is gone (`alive` False)."""
    from common.runstate import PROCESS_FILE, process_record

    search_run(folder, checkpoints, {**NB201_RUN, "status": "running", "epochs": 40, "epochs_done": None})
    record = process_record() if alive else {**process_record(), "process_start": "another-boot:1"}
    (folder / PROCESS_FILE).write_text(json.dumps(record))
    return folder


def test_resume_epoch_left_out_is_the_search_runs_last_epoch(tmp_path, log_lines):
    """A finished search of any length projected with --resume_expid alone: its last epoch (from
    its result.json), as it is, and the first log line says so."""
    search = search_run(tmp_path / "nasbench201" / "search-short", [1, 2, 3], {**NB201_RUN, "epochs": 3,
                                                                                "epochs_done": 3})
    cfg = search_cfg("--method", "darts-proj", "--save", "darts-proj-201", "--exp_root", str(tmp_path),
                     "--resume_expid", "search-short")
    cfg, target = projection_target(cfg, nb201.SEARCH_SPACE)
    assert target.supernet == search / "checkpoint_3.pth.tar" and cfg.epochs == 3
    assert target.folder == search / "darts-proj-201-seed1-acc-intv5-ep3"
    assert log_lines[0].endswith("checkpoint_3.pth.tar as it is (search epoch 3: the search run's last, from its "
                                 "result.json; --epochs 3: the search run's)")
    # an earlier checkpoint of a finished search, deliberately: trained up to its end first, as the original
    assert nb201_projection(tmp_path, "--resume_expid", "search-short", "--resume_epoch", "1").folder.name \
        .endswith("-ep1-to3")


def test_the_default_epoch_without_its_checkpoint_names_where_it_came_from(tmp_path):
    search_run(tmp_path / "nasbench201" / "search-x", [1], {**NB201_RUN, "epochs": 3, "epochs_done": 3})
    with pytest.raises(ConfigError) as e:
        nb201_projection(tmp_path, "--resume_expid", "search-x")
    assert "the search run's last epoch is 3 (its result.json), but" in str(e.value)
    assert "holds no checkpoint_3.pth.tar (epochs: 1)" in str(e.value) and "--resume_epoch 3" not in str(e.value)


@pytest.mark.parametrize("flags", [[], ["--resume_epoch", "-1"], ["--resume_epoch", "2"],
                                   ["--resume_epoch", "2", "--epochs", "40"]])
def test_a_live_search_is_refused(tmp_path, flags):
    """A search whose process still runs: projecting it would train the rest of the search in the
    projection folder, beside the search itself. Refused in one line that says what to do."""
    live_search(tmp_path / "nasbench201" / "search-live", [1, 2])
    with pytest.raises(ConfigError) as e:
        nb201_projection(tmp_path, "--resume_expid", "search-live", *flags)
    msg = str(e.value)
    assert e.value.flag == "resume_expid" and "\n" not in msg
    assert "is still running (process " in msg and "is alive" in msg
    assert "checkpoints of epochs 1, 2 of its 40" in msg and "project it once it has finished" in msg
    assert "or pass --resume_epoch 2 --epochs 2 to project checkpoint 2 as it is" in msg


def test_a_checkpoint_of_a_live_search_can_be_projected_as_it_is(tmp_path):
    search = live_search(tmp_path / "nasbench201" / "search-live", [1, 2])
    p = nb201_projection(tmp_path, "--resume_expid", "search-live", "--resume_epoch", "1", "--epochs", "1")
    assert (p.epoch, p.cfg.epochs) == (1, 1) and p.folder == search / "darts-proj-201-seed1-acc-intv5-ep1"


@pytest.mark.parametrize("result,state,todo", [
    ({"status": "interrupted", "signal": "SIGTERM"}, "was interrupted by SIGTERM before its last epoch", "continue it"),
    ({"status": "failed", "error": "OSError: disk full"}, "failed before its last epoch (OSError: disk full)",
     "continue it"),
    (None, "stopped before its last epoch (process ", "continue it (its search command with --resume_epoch -1)"),
])
def test_a_search_that_stopped_before_its_last_epoch_is_refused(tmp_path, result, state, todo):
    folder = live_search(tmp_path / "nasbench201" / "search-cut", [5, 10], alive=False)
    if result:
        (folder / "result.json").write_text(json.dumps({**NB201_RUN, "epochs": 40, **result}))
    with pytest.raises(ConfigError) as e:
        nb201_projection(tmp_path, "--resume_expid", "search-cut")
    assert state in str(e.value) and todo in str(e.value)
    assert "--resume_epoch 10 --epochs 10 to project checkpoint 10 as it is" in str(e.value)


def test_a_search_without_checkpoints_yet_is_refused(tmp_path):
    live_search(tmp_path / "nasbench201" / "search-young", [])
    with pytest.raises(ConfigError, match="is still running .* has written no search checkpoint"):
        nb201_projection(tmp_path, "--resume_expid", "search-young")


def test_a_search_of_the_original_code_takes_its_latest_checkpoint_when_that_ends_the_search(tmp_path):
    """No result.json: whether it finished is unknown. Its latest checkpoint is taken when it is the
    end of --epochs (projected as it is); an earlier one only when asked for."""
    search_run(tmp_path / "nasbench201" / "search-old", [20, 40, 100])
    p = nb201_projection(tmp_path, "--resume_expid", "search-old")
    assert (p.epoch, p.cfg.epochs) == (100, 100) and "no result.json" in p.epoch_from
    search_run(tmp_path / "nasbench201" / "search-cut", [20, 40])
    with pytest.raises(ConfigError) as e:
        nb201_projection(tmp_path, "--resume_expid", "search-cut")
    assert "has no result.json" in str(e.value) and "latest checkpoint is epoch 40 (of 20, 40)" in str(e.value)
    assert "pass --resume_epoch 40 --epochs 40 to project checkpoint 40 as it is, or --resume_epoch 40 to train " \
           "it up to --epochs 100 first" in str(e.value)
    assert nb201_projection(tmp_path, "--resume_expid", "search-cut", "--resume_epoch", "40").cfg.epochs == 100
