"""Config schema: YAML + dotted overrides, whole-mapping replacement, clear errors."""

import pytest
import yaml

from genrl.config import ConfigError, load_config, parse_override


def test_defaults_and_overrides(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text(yaml.safe_dump({"train": {"lr": "1e-4", "steps": 7}, "sample": {"group_size": 4}}))
    cfg = load_config(str(p), ["train.batch_size=4", "sample.sde_window_range=[0,5]", "model.family=null"])
    assert cfg.train.lr == 1e-4 and isinstance(cfg.train.lr, float)  # YAML reads 1e-4 as a string; accepted
    assert cfg.train.steps == 7 and cfg.train.batch_size == 4 and cfg.train.weight_decay == 1e-4
    assert cfg.sample.group_size == 4 and cfg.sample.sde_window_range == [0, 5]
    assert cfg.algorithm.name == "grpo" and cfg.algorithm.clip_range == 1e-4
    assert cfg.rewards == {"shapes": 1.0}


def test_yaml_no_is_a_string_where_a_string_is_expected(tmp_path):
    """YAML 1.1 reads a bare `no` as False: run.mixed_precision=no (its documented default) must still work."""
    assert load_config(raw={}, overrides=["run.mixed_precision=no"]).run.mixed_precision == "no"
    assert load_config(raw={"run": {"mixed_precision": False}}).run.mixed_precision == "no"
    with pytest.raises(ConfigError, match="mixed_precision"):
        load_config(raw={}, overrides=["run.mixed_precision=yes"])


def test_mapping_replacement_and_entry_override():
    cfg = load_config(raw={"rewards": {"shapes": 1.0, "jpeg_compressibility": 0.1}},
                      overrides=["rewards={ocr:1.0,pickscore:0.5}"])
    assert cfg.rewards == {"ocr": 1.0, "pickscore": 0.5}  # replaced whole
    cfg = load_config(raw={}, overrides=["rewards.jpeg_compressibility=0.5"])
    assert cfg.rewards == {"shapes": 1.0, "jpeg_compressibility": 0.5}  # one entry added
    cfg = load_config(raw={"train": {"steps": 3}}, overrides=["train={lr: 0.001}"])
    assert cfg.train.steps == 3 and cfg.train.lr == 0.001  # a mapping on a section sets only those fields


def test_algorithm_section_follows_name():
    cfg = load_config(raw={"algorithm": {"name": "grpo", "beta": 0.0}}, overrides=["algorithm.clip_range=1e-5"])
    assert cfg.algorithm.beta == 0.0 and cfg.algorithm.clip_range == 1e-5
    with pytest.raises(ConfigError, match="algorithm.clip_rnge.*did you mean 'algorithm.clip_range'"):
        load_config(raw={}, overrides=["algorithm.clip_rnge=1"])
    with pytest.raises(ValueError, match="unknown algorithm.name 'grop'.*did you mean 'grpo'"):
        load_config(raw={"algorithm": {"name": "grop"}})


@pytest.mark.parametrize(
    "overrides, pattern",
    [
        (["train.lrr=1"], r"unknown config key 'train.lrr' \(did you mean 'train.lr'\?\)"),
        (["trian.lr=1"], r"unknown config key 'trian' \(did you mean 'train'\?\)"),
        (["train.lr=abc"], r"'train.lr' expects float, got str 'abc'"),
        (["train.steps=1.5"], r"'train.steps' expects int"),
        (["ema.enabled=maybe"], r"'ema.enabled' expects bool"),
        (["rewards=[ocr]"], r"'rewards' expects a mapping"),
        (["train.steps"], r"not KEY=VALUE"),
        (["sample.group_size=1"], r"group_size"),
    ],
)
def test_errors_are_one_line_and_name_the_key(overrides, pattern):
    with pytest.raises(ValueError, match=pattern) as e:
        load_config(raw={}, overrides=overrides)
    assert "\n" not in str(e.value)


def test_file_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="config file"):
        load_config(str(tmp_path / "missing.yaml"))
    bad = tmp_path / "bad.yaml"
    bad.write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="must be a mapping"):
        load_config(str(bad))


def test_parse_override_yaml_values():
    assert parse_override("a.b=3") == ("a.b", 3)
    assert parse_override("a={x:1, y: 2}") == ("a", {"x": 1, "y": 2})
    assert parse_override("a=hello world") == ("a", "hello world")


def test_shipped_configs_load():
    import glob

    files = sorted(glob.glob("configs/shapes/grpo.yaml") + glob.glob("configs/sd35/*_grpo.yaml"))
    assert len(files) == 4
    for f in files:
        cfg = load_config(f)
        assert cfg.algorithm.name == "grpo"
    sd = load_config("configs/sd35/geneval_grpo.yaml")
    assert (sd.sample.group_size, sd.sample.groups_per_step, sd.sample.noise_level, sd.sample.cfg_scale) == (
        24, 48, 0.7, 4.5)
    assert (sd.algorithm.clip_range, sd.algorithm.beta, sd.train.lr, sd.model.lora_rank) == (1e-4, 0.04, 3e-4, 32)
    assert load_config("configs/sd35/pickscore_grpo.yaml").algorithm.beta == 0.01


FAST_RECIPES = ["configs/sd35/geneval_grpo_fast_nocfg.yaml", "configs/sd35/pickscore_grpo_fast_nocfg.yaml",
                "configs/flux/pickscore_grpo_fast.yaml"]


@pytest.mark.parametrize("path", FAST_RECIPES)
def test_shipped_fast_recipes_have_reference_values(path):
    cfg = load_config(path)
    s, a = cfg.sample, cfg.algorithm
    assert (s.method, s.noise_level, s.sde_window_size, a.clip_range, a.beta) == ("cps", 0.8, 3, 1e-5, 0.0)
    assert a.window_per == "batch"
    if "sd35" in path:
        assert s.sde_window_range == [0, 5] and s.cfg_scale == 1.0 and cfg.eval.cfg_scale == 1.0
    else:
        assert s.sde_window_range == [0, 3]


def test_every_shipped_config_loads():
    import glob

    files = sorted(glob.glob("configs/*/*.yaml"))
    files = [f for f in files if "/accelerate/" not in f]
    assert len(files) >= 16
    for f in files:
        load_config(f)  # schema, types and cross-field checks


def test_shipped_config_model_path_resolves_from_any_working_directory(tmp_path, monkeypatch):
    """configs/shapes/*.yaml name assets/shapes-base relative to the repo root; from another cwd the train CLI
    must resolve it to the repo's copy instead of treating it as a hub id."""
    from types import SimpleNamespace

    from genrl.cli.train import REPO_ROOT, _repo_model_path

    monkeypatch.chdir(tmp_path)
    cfg = SimpleNamespace(model=SimpleNamespace(path="assets/shapes-base"))
    _repo_model_path(cfg)
    assert cfg.model.path == str(REPO_ROOT / "assets" / "shapes-base")
    cfg = SimpleNamespace(model=SimpleNamespace(path="org/hub-model"))
    _repo_model_path(cfg)
    assert cfg.model.path == "org/hub-model"  # not a repo path: left for the hub


def test_unreachable_hub_id_is_one_clear_error(monkeypatch):
    from genrl.policies import pipeline_class_name

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    expected = "not a local directory, and cannot fetch nosuch-org/nosuch-model/model_index.json"
    with pytest.raises(FileNotFoundError, match=expected):
        pipeline_class_name("nosuch-org/nosuch-model", local_files_only=True)
