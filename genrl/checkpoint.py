"""Run checkpoints: written atomically, with a `latest` pointer; the last good checkpoint is never touched.

Layout of RUN_DIR/checkpoints/step_000020/:
    lora/                   the exported trainable weights (EMA weights when EMA is on), in the adapter's
                            own format (policy.save_trainable; diffusers LoRA format for SD3/FLUX)
    trainable.safetensors   the raw (non-EMA) trainable weights, for resuming
    ema.safetensors         the EMA shadow weights
    optimizer.pt            optimizer state_dict (tensors + numbers; loaded with weights_only=True); under
                            DeepSpeed, every process's ZeRO partition (genrl.distributed.ZeroOptimizerState)
    state.pt                step, update count, counters, scheduler, algorithm state, RNG states
    meta.json               step, time, what is inside, and every file's size and sha256 (written last)
Writing goes to checkpoints/.tmp-step_XXXXXX and is renamed into place with os.replace after every file is
flushed; then `latest` (a text file holding the directory name) is replaced atomically. A crash at any moment
leaves the previous checkpoint and pointer intact. Old checkpoints are renamed to .del-step_XXXXXX before they
are deleted, so a half-deleted one is never mistaken for a checkpoint; `clean_interrupted` removes such leftovers.

On resume, `find_resumable` verifies checkpoints against their manifest (sizes and sha256) from the newest to the
oldest and returns the newest intact one with a note for each damaged one it skipped; loading problems are
one-line errors that never suggest unsafe unpickling.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import time

import numpy as np
import torch
from safetensors.torch import load_file, save_file


def rng_state() -> dict:
    np_state = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "python": _py_state_to_list(random.getstate()),
        "numpy": {"name": np_state[0], "keys": torch.from_numpy(np_state[1].astype(np.int64)), "pos": int(np_state[2]),
                  "has_gauss": int(np_state[3]), "cached": float(np_state[4])},
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _py_state_to_list(st):
    return [st[0], list(st[1]), st[2]]


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    n = state["numpy"]
    np.random.set_state((n["name"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _fsync_dir(path: str) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError:
        pass


def _write_atomic_text(path: str, text: str) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _cpu(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu").contiguous() for k, v in state.items()}


def save_checkpoint(run_dir: str, step: int, *, policy, ema, optimizer_state: dict, state: dict,
                    keep_last: int = 2) -> str:
    """Write checkpoint `step` atomically; returns its directory. `optimizer_state` (an optimizer's state_dict)
    goes to optimizer.pt and `state` to state.pt as they are."""
    root = os.path.join(run_dir, "checkpoints")
    os.makedirs(root, exist_ok=True)
    name = f"step_{step:06d}"
    final, tmp = os.path.join(root, name), os.path.join(root, f".tmp-{name}")
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    try:
        _write_files(tmp, step, policy=policy, ema=ema, optimizer_state=optimizer_state, state=state)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)  # a failed write (disk full, interrupt) leaves nothing half-written
        raise
    if os.path.exists(final):  # re-saving the same step (e.g. after a resume): move the old one aside first
        trash = os.path.join(root, f".old-{name}")
        shutil.rmtree(trash, ignore_errors=True)
        os.replace(final, trash)
        os.replace(tmp, final)
        shutil.rmtree(trash, ignore_errors=True)
    else:
        os.replace(tmp, final)
    _fsync_dir(root)
    _write_atomic_text(os.path.join(root, "latest"), name + "\n")
    _prune(root, keep_last, keep=name)
    return final


def _write_files(tmp: str, step: int, *, policy, ema, optimizer_state: dict, state: dict) -> None:
    raw = policy.trainable_state()
    save_file(_cpu(raw), os.path.join(tmp, "trainable.safetensors"))
    if ema is not None:
        save_file(_cpu(ema.state_dict()), os.path.join(tmp, "ema.safetensors"))
        with policy.use_trainable(ema.state_for(raw)):
            policy.save_trainable(os.path.join(tmp, "lora"))
    else:
        policy.save_trainable(os.path.join(tmp, "lora"))
    torch.save(optimizer_state, os.path.join(tmp, "optimizer.pt"))
    torch.save(state, os.path.join(tmp, "state.pt"))
    for dirpath, _, files in os.walk(tmp):
        for fn in files:
            with open(os.path.join(dirpath, fn), "rb") as fh:
                os.fsync(fh.fileno())
    meta = {"step": step, "time": time.time(), "ema": ema is not None, "files": _manifest(tmp)}
    _write_atomic_text(os.path.join(tmp, "meta.json"), json.dumps(meta))


def _sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _manifest(directory: str) -> dict[str, list]:
    """{relative path: [size, sha256]} of every file under `directory` (meta.json excluded)."""
    out = {}
    for dirpath, _, files in os.walk(directory):
        for fn in files:
            full = os.path.join(dirpath, fn)
            rel = os.path.relpath(full, directory)
            if rel != "meta.json":
                out[rel] = [os.path.getsize(full), _sha256(full)]
    return out


#: what a checkpoint needs to resume a run (exporting / sampling needs only its lora/)
RESUME_FILES = ("trainable.safetensors", "optimizer.pt", "state.pt")


def verify_checkpoint(path: str, required: tuple[str, ...] = RESUME_FILES) -> str | None:
    """None if checkpoint dir `path` is intact, else what is wrong (one line): the `required` entries exist and
    every file matches the manifest in meta.json (checkpoints written before the manifest existed are checked for
    the required entries only)."""
    for entry in required:
        if not os.path.exists(os.path.join(path, entry)):
            return f"{entry} is missing"
    meta = os.path.join(path, "meta.json")
    if not os.path.isfile(meta):
        return None if required != RESUME_FILES else "meta.json is missing"
    try:
        with open(meta) as f:
            files = json.load(f).get("files")
    except (OSError, ValueError, AttributeError):
        return "meta.json is unreadable"
    for rel, (size, digest) in (files or {}).items():
        full = os.path.join(path, rel)
        if not os.path.isfile(full):
            return f"{rel} is missing"
        if os.path.getsize(full) != size:
            return f"{rel} has {os.path.getsize(full)} bytes, {size} were written (truncated or replaced)"
        if _sha256(full) != digest:
            return f"{rel} does not match its checksum (damaged)"
    return None


def _prune(root: str, keep_last: int, keep: str) -> None:
    if keep_last <= 0:
        return
    done = sorted(d for d in os.listdir(root) if d.startswith("step_") and os.path.isdir(os.path.join(root, d)))
    for d in done[:-keep_last]:
        if d != keep:
            trash = os.path.join(root, f".del-{d}")
            os.replace(os.path.join(root, d), trash)  # a half-deleted checkpoint is never a step_* dir
            shutil.rmtree(trash, ignore_errors=True)


def clean_interrupted(run_dir: str) -> list[str]:
    """Remove what an interrupted save or prune left behind (.tmp-*, .old-*, .del-* dirs, latest.tmp); returns
    the names removed."""
    root = os.path.join(run_dir, "checkpoints")
    if not os.path.isdir(root):
        return []
    gone = []
    for d in sorted(os.listdir(root)):
        full = os.path.join(root, d)
        if d.startswith((".tmp-", ".old-", ".del-")) and os.path.isdir(full):
            shutil.rmtree(full, ignore_errors=True)
            gone.append(d)
        elif d == "latest.tmp":
            os.remove(full)
            gone.append(d)
    return gone


def _candidates(root: str) -> list[str]:
    """Checkpoint names, newest first, the `latest` pointer's target before the others."""
    names = sorted((d for d in os.listdir(root) if d.startswith("step_") and os.path.isdir(os.path.join(root, d))),
                   reverse=True)
    ptr = os.path.join(root, "latest")
    if os.path.isfile(ptr):
        with open(ptr) as f:
            name = f.read().strip()
        if name in names:
            names.remove(name)
            names.insert(0, name)
    return names


def find_resumable(run_dir: str, required: tuple[str, ...] = RESUME_FILES) -> tuple[str | None, list[str]]:
    """(the newest intact checkpoint or None, a note for each damaged one skipped)."""
    root = os.path.join(run_dir, "checkpoints")
    if not os.path.isdir(root):
        return None, []
    notes = []
    for name in _candidates(root):
        path = os.path.join(root, name)
        problem = verify_checkpoint(path, required)
        if problem is None:
            return path, notes
        notes.append(f"checkpoint {name} is damaged ({problem}); skipped")
    return None, notes


def latest_checkpoint(run_dir: str, required: tuple[str, ...] = RESUME_FILES) -> str | None:
    """The newest intact checkpoint of `run_dir` (the `latest` pointer's target first) holding `required`, or None."""
    return find_resumable(run_dir, required)[0]


def _load_pt(path: str):
    try:
        return torch.load(path, weights_only=True)
    except Exception as e:  # truncated / garbage / a pickle with non-tensor objects: never retry unsafely
        raise ValueError(f"checkpoint file {path} cannot be read ({type(e).__name__}); it is damaged or was not "
                         "written by genrl; resume from an earlier checkpoint (delete this one)") from None


def load_checkpoint(path: str, *, policy, ema, optimizer) -> dict:
    """Restore weights, EMA and optimizer from checkpoint dir `path`; returns the state.pt dict."""
    try:
        raw = load_file(os.path.join(path, "trainable.safetensors"))
    except Exception as e:
        raise ValueError(f"checkpoint file {path}/trainable.safetensors cannot be read ({type(e).__name__}); it "
                         "is damaged; resume from an earlier checkpoint (delete this one)") from None
    params = dict(policy.named_parameters())
    missing = [k for k in raw if k not in params]
    if missing:
        raise ValueError(f"checkpoint {path} does not match the model (unknown tensor {missing[0]!r}); "
                         "resume with the same model.path and model.lora_rank")
    for k, v in raw.items():
        if tuple(v.shape) != tuple(params[k].shape):
            raise ValueError(f"checkpoint {path} does not match the model: {k} has shape {tuple(v.shape)} there and "
                             f"{tuple(params[k].shape)} now; resume with the run's own model.lora_rank / model "
                             "settings")
    with torch.no_grad():
        for k, v in raw.items():
            params[k].copy_(v)
    if ema is not None and os.path.isfile(os.path.join(path, "ema.safetensors")):
        ema.load_state_dict(load_file(os.path.join(path, "ema.safetensors")))
    opt_state = _load_pt(os.path.join(path, "optimizer.pt"))
    if "zero_rank_states" in opt_state and isinstance(optimizer, torch.optim.Optimizer):
        raise ValueError(f"checkpoint {path} was written by a DeepSpeed run; resume it with the same DeepSpeed "
                         "launch config and process count")
    optimizer.load_state_dict(opt_state)
    return _load_pt(os.path.join(path, "state.pt"))
