"""Damaged and interrupted checkpoints: verification against the manifest, fallback to the newest intact
checkpoint with a note, one-line errors that never suggest unsafe loading, refusal to resume with a changed model,
and cleanup of what interrupted writes left behind."""

import json
import os

import pytest
import torch
from loop_helpers import tiny_config, tiny_shapes_model
from safetensors.torch import load_file

from genrl import checkpoint as ck
from genrl.cli import main as cli
from genrl.loop import Trainer, TrainingAborted, train


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return tiny_shapes_model(str(tmp_path_factory.mktemp("tiny") / "shapes"))


def _cfg(model, run, steps, **kw):
    return tiny_config(model, str(run), train={"steps": steps}, eval={"every": 0},
                       checkpoint={"every": 1, "keep_last": 3}, **kw)


@pytest.fixture(scope="module")
def straight(model, tmp_path_factory):
    run = tmp_path_factory.mktemp("straight") / "run"
    train(_cfg(model, run, 3), progress=False)
    return run


def _truncate(path):
    data = open(path, "rb").read()
    open(path, "wb").write(data[: len(data) // 2])


@pytest.mark.parametrize("damage", ["truncate_trainable", "truncate_optimizer", "garbage_state", "missing_ema"])
def test_damaged_latest_falls_back_to_the_previous_intact_one(model, straight, tmp_path, damage):
    run = tmp_path / "run"
    train(_cfg(model, run, 3), progress=False)
    last = run / "checkpoints" / "step_000003"
    if damage == "truncate_trainable":
        _truncate(last / "trainable.safetensors")
    elif damage == "truncate_optimizer":
        _truncate(last / "optimizer.pt")
    elif damage == "garbage_state":
        (last / "state.pt").write_bytes(b"not a checkpoint at all")
    else:
        os.remove(last / "ema.safetensors")
    path, notes = ck.find_resumable(str(run))
    assert path.endswith("step_000002") and len(notes) == 1 and "step_000003 is damaged" in notes[0]
    logs = []
    Trainer(_cfg(model, run, 3), resume=True, progress=False, log_fn=logs.append).run()
    assert any("damaged" in m for m in logs) and any("resumed from" in m and "step_000002" in m for m in logs)
    a = load_file(str(straight / "checkpoints" / "step_000003" / "trainable.safetensors"))
    b = load_file(str(run / "checkpoints" / "step_000003" / "trainable.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)  # re-ran step 3 exactly
    assert ck.verify_checkpoint(str(run / "checkpoints" / "step_000003")) is None


def test_unreadable_files_are_one_line_errors_without_unsafe_advice(model, tmp_path):
    run = tmp_path / "run"
    train(_cfg(model, run, 1), progress=False)
    path = run / "checkpoints" / "step_000001"
    (path / "state.pt").write_bytes(b"\x80\x02garbage")
    tr = Trainer(_cfg(model, tmp_path / "other", 1), progress=False)
    with pytest.raises(ValueError) as e:
        ck.load_checkpoint(str(path), policy=tr.policy, ema=tr.ema, optimizer=tr.optimizer)
    msg = str(e.value)
    assert "state.pt cannot be read" in msg and "weights_only=False" not in msg and "\n" not in msg


def test_resume_refuses_a_changed_model(model, tmp_path, capsys):
    run = tmp_path / "run"
    train(_cfg(model, run, 1), progress=False)
    assert cli(["train", "--resume", str(run), "model.lora_rank=8", "--no-progress"]) == 2
    assert "model.lora_rank cannot change on --resume" in capsys.readouterr().err
    cfg = tiny_config(model, str(run), overrides=["model.lora_rank=8"], train={"steps": 2}, eval={"every": 0})
    with pytest.raises(ValueError, match="lora_rank"):
        Trainer(cfg, resume=True, progress=False)


def test_resume_without_checkpoint_says_so_and_leftovers_are_cleaned(model, tmp_path):
    run = tmp_path / "run"
    train(_cfg(model, run, 1), progress=False)
    root = run / "checkpoints"
    for d in (".tmp-step_000002", ".del-step_000000", ".old-step_000001"):
        (root / d).mkdir()
        (root / d / "x").write_text("half")
    logs = []
    Trainer(_cfg(model, run, 2), resume=True, progress=False, log_fn=logs.append)
    assert sorted(os.listdir(root)) == ["latest", "step_000001"]
    assert sum("interrupted" in m for m in logs) == 3
    # no intact checkpoint: say so
    (root / "step_000001" / "trainable.safetensors").write_bytes(b"")
    logs.clear()
    Trainer(_cfg(model, run, 2), resume=True, progress=False, log_fn=logs.append)
    assert any("no intact checkpoint" in m for m in logs)


def test_manifest_and_prune_keep_only_complete_checkpoints(model, tmp_path):
    run = tmp_path / "run"
    train(tiny_config(model, str(run), train={"steps": 3}, eval={"every": 0},
                      checkpoint={"every": 1, "keep_last": 2}), progress=False)
    assert sorted(os.listdir(run / "checkpoints")) == ["latest", "step_000002", "step_000003"]
    meta = json.loads((run / "checkpoints" / "step_000003" / "meta.json").read_text())
    assert {"trainable.safetensors", "optimizer.pt", "state.pt", "ema.safetensors"} <= set(meta["files"])


@pytest.mark.slow
def test_ctrl_c_exits_cleanly_and_the_run_resumes(model, tmp_path):
    import signal
    import subprocess
    import sys
    import time

    from genrl.config import save_config

    run = tmp_path / "run"
    cfg_path = tmp_path / "c.yaml"
    save_config(_cfg(model, run, 200), str(cfg_path))
    env = {**os.environ, "PYTHONPATH": os.getcwd(), "OMP_NUM_THREADS": "1"}
    # a shell's background job inherits SIGINT ignored, and Python then installs no KeyboardInterrupt handler:
    # restore the default in the child so the test means the same wherever CI runs it
    proc = subprocess.Popen([sys.executable, "-m", "genrl", "train", str(cfg_path), "--no-progress"],
                            stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.time() + 240
    while not (run / "checkpoints" / "latest").exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.5)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "interrupted; resume with `genrl train --resume" in err and "Traceback" not in err
    path, notes = ck.find_resumable(str(run))
    assert path is not None and not notes
    step = int(os.path.basename(path).split("_")[1])
    assert cli(["train", "--resume", str(run), f"train.steps={step + 1}", "--no-progress"]) == 0
    assert ck.latest_checkpoint(str(run)).endswith(f"step_{step + 1:06d}")


@pytest.mark.slow
@pytest.mark.parametrize("algo", [{"name": "grpo", "beta": 0.04}, {"name": "nft"}, {"name": "awm", "n_train": 2}])
def test_resume_is_bit_exact_with_evaluations_every_step(model, tmp_path, algo):
    """Evaluations (held-out and training prompts, EMA swap-in) between checkpoints change nothing: 4 straight
    steps == 2 + resume + 2, for every method, weights and EMA bit for bit."""
    from loop_helpers import tiny_raw

    from genrl.config import load_config

    sample = {"method": "flow_grpo", "noise_level": 0.7} if algo["name"] == "grpo" else {"method": "euler",
                                                                                          "noise_level": 0.0}

    def cfg(run, steps):
        raw = tiny_raw(model, str(run), train={"steps": steps}, sample=sample, checkpoint={"every": 2},
                       eval={"every": 1, "train_prompts": 4})
        raw["algorithm"] = algo
        return load_config(raw=raw)

    a, b = tmp_path / "a", tmp_path / "b"
    train(cfg(a, 4), progress=False)
    train(cfg(b, 2), progress=False)
    Trainer(cfg(b, 4), resume=True, progress=False, log_fn=lambda m: None).run()
    for f in ("trainable", "ema"):
        ta = load_file(str(a / "checkpoints" / "step_000004" / f"{f}.safetensors"))
        tb = load_file(str(b / "checkpoints" / "step_000004" / f"{f}.safetensors"))
        assert all(torch.equal(ta[k], tb[k]) for k in ta), f


def test_run_dir_under_a_file_is_refused_before_loading(model, tmp_path):
    (tmp_path / "afile").write_text("x")
    with pytest.raises(ValueError, match="is a file; choose another run.dir"):
        Trainer(_cfg(model, tmp_path / "afile" / "run", 1), progress=False)


def test_disk_full_during_a_checkpoint_keeps_the_last_good_one(model, tmp_path, monkeypatch):
    import errno

    run = tmp_path / "run"
    real_save = torch.save
    calls = {"n": 0}

    def flaky_save(obj, path, *a, **k):
        calls["n"] += 1
        if calls["n"] > 2:  # the second checkpoint's optimizer.pt
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_save(obj, path, *a, **k)

    monkeypatch.setattr(ck.torch, "save", flaky_save)
    with pytest.raises(TrainingAborted, match=r"no space left on device\); the last good checkpoint .*step_000001 is "
                                              "intact"):
        Trainer(_cfg(model, run, 3), progress=False).run()
    assert sorted(os.listdir(run / "checkpoints")) == ["latest", "step_000001"]  # no half-written step_000002
    assert ck.verify_checkpoint(str(run / "checkpoints" / "step_000001")) is None
