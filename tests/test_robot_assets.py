"""The shipped robot BC checkpoints and configs: loadable, measured success in the headroom band, and
`genrl eval --model DIR --episodes N --seed S --out F.json` on them."""

import glob
import json
import os

import pytest

from genrl.config import load_config

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.parametrize("name", ["robot2d-bc", "metaworld-push-v3-bc"])
def test_bc_asset_card_and_measured_success(name):
    from genrl.policies import load_policy

    d = os.path.join(REPO, "assets", name)
    log = json.load(open(os.path.join(d, "pretrain_log.json")))
    assert 0.4 <= log["eval"]["success_rate"] <= 0.6  # RL has headroom
    assert f"{log['eval']['success_rate']:.3f}" in open(os.path.join(d, "README.md")).read()
    assert os.path.getsize(os.path.join(d, "model.safetensors")) < 3_000_000
    pol = load_policy(d)
    assert pol.config.env == log["config"]["env"]


def test_shipped_robot_configs_load():
    files = sorted(glob.glob(os.path.join(REPO, "configs", "robot", "*.yaml")))
    seen = set()
    for f in files:
        c = load_config(f)
        assert c.algorithm.name == "pi_rl" and c.algorithm.noise_method in os.path.basename(f)
        seen.add((c.algorithm.env.split("/")[0], c.algorithm.noise_method))
    assert {("robot2d", "flow_noise"), ("robot2d", "flow_sde"), ("metaworld", "flow_noise"),
            ("metaworld", "flow_sde")} <= seen


def test_eval_cli_writes_success_rate(tmp_path):
    from genrl.cli import main as cli

    out, gif = tmp_path / "r.json", tmp_path / "r.gif"
    assert cli(["eval", "--model", os.path.join(REPO, "assets", "robot2d-bc"), "--episodes", "20", "--seed", "0",
                "--out", str(out), "--gif", str(gif)]) == 0
    rep = json.load(open(out))
    assert rep["episodes"] == 20 and 0 < rep["success_rate"] < 1 and rep["env"] == "robot2d" and gif.is_file()
    assert cli(["eval", "--model", os.path.join(REPO, "assets", "robot2d-bc"), "--episodes", "20", "--seed", "0",
                "--out", str(tmp_path / "r2.json")]) == 0
    assert json.load(open(tmp_path / "r2.json"))["success_rate"] == rep["success_rate"]  # fixed seeds


def test_eval_cli_bad_env_is_one_line_error(tmp_path, capsys):
    from genrl.cli import main as cli

    assert cli(["eval", "--model", os.path.join(REPO, "assets", "robot2d-bc"), "--env", "robot9", "--episodes", "2",
                "--out", str(tmp_path / "r.json")]) == 2
    assert "unknown environment id 'robot9'" in capsys.readouterr().err
    assert not (tmp_path / "r.json").exists()
