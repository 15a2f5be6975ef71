"""Where reward weights come from: a local file, a local directory, or a file in a Hugging Face Hub repo.

`resolve_file(spec, default_filename)` accepts
  - a path to an existing file                       -> that file
  - a path to an existing directory                   -> dir/default_filename
  - "org/repo"                                        -> hf_hub_download("org/repo", default_filename)
  - "org/repo/sub/file.pth"                           -> hf_hub_download("org/repo", "sub/file.pth")
`local_files_only=True` never touches the network (only the local HF cache is read).
"""

from __future__ import annotations

import os


def resolve_file(spec: str, default_filename: str, *, local_files_only: bool = False, what: str = "weights",
                 **hub_kwargs) -> str:
    spec = os.fspath(spec)
    expanded = os.path.expanduser(spec)
    if os.path.isfile(expanded):
        return expanded
    if os.path.isdir(expanded):
        path = os.path.join(expanded, default_filename)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"{what}: {path} does not exist; put {default_filename} in {expanded} "
                                    "or pass the file path directly")
        return path
    parts = spec.strip("/").split("/")
    if len(parts) < 2 or spec.startswith((".", "/", "~")):
        raise FileNotFoundError(f"{what}: {spec!r} is neither an existing file/directory nor a hub repo id "
                                "('org/name' or 'org/name/file')")
    repo_id = "/".join(parts[:2])
    filename = "/".join(parts[2:]) or default_filename
    from huggingface_hub import hf_hub_download

    try:
        return hf_hub_download(repo_id, filename, local_files_only=local_files_only, **hub_kwargs)
    except Exception as e:  # hub errors have many types (offline, missing repo, gated, ...)
        hint = ("it is not in the local Hugging Face cache; download it once online or pass a local path"
                if local_files_only else "check the repo id / your network, or pass a local path")
        raise FileNotFoundError(f"{what}: cannot get {filename!r} from hub repo {repo_id!r} ({type(e).__name__}); "
                                f"{hint}") from e


def load_state_dict(path: str) -> dict:
    """Load a bare state dict from .safetensors or a torch pickle (weights_only=True, so no code runs).
    A {"state_dict": ...} wrapper and a "module." prefix (DataParallel) are unwrapped."""
    import torch

    if path.endswith(".safetensors"):
        from safetensors.torch import load_file

        sd = load_file(path, device="cpu")
    else:
        sd = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(sd, dict) and "state_dict" in sd and isinstance(sd["state_dict"], dict):
        sd = sd["state_dict"]
    if not isinstance(sd, dict):
        raise ValueError(f"{path} does not hold a state dict (got {type(sd).__name__})")
    if sd and all(k.startswith("module.") for k in sd):
        sd = {k[len("module."):]: v for k, v in sd.items()}
    return sd
