"""Model adapters. `load_policy(path, **options)` picks the adapter from the pipeline directory's
model_index.json `genrl_family` if set (genrl's own models, e.g. "voxel3d"), else its `_class_name` (or `family=`
explicitly; a local transformers model directory, config.json without model_index.json, is the "dllm" family) and
calls its `from_pretrained(path, **options)`."""

from __future__ import annotations

import importlib
import json
import os

from genrl.policies.base import Cond, FlowPolicy, TrainablePolicy

# pipeline class name (model_index.json) -> (family, "module:AdapterClass")
ADAPTERS: dict[str, tuple[str, str]] = {
    "ShapesPipeline": ("shapes", "genrl.policies.shapes:ShapesPolicy"),
    "StableDiffusion3Pipeline": ("sd3", "genrl.policies.sd3:SD3Policy"),
    "FluxPipeline": ("flux", "genrl.policies.flux:FluxPolicy"),
    "RobotFlowPolicy": ("robot", "genrl.policies.robot:RobotFlowPolicy"),
    "WanPipeline": ("wan", "genrl.policies.wan:WanPolicy"),
}
FAMILIES = {fam: target for fam, target in ADAPTERS.values()}
FAMILIES["dllm"] = "genrl.policies.dllm:TransformersDLLM"  # transformers mask predictors (config.json, no model_index)
FAMILIES["voxel3d"] = "genrl.policies.voxel3d:VoxelPolicy"  # a pixel-space WanPipeline over voxel grids


def read_model_index(path: str, local_files_only: bool = False) -> dict:
    """model_index.json of a local pipeline dir or a hub id (FileNotFoundError, one line, for anything else)."""
    if os.path.isdir(path):
        index = os.path.join(path, "model_index.json")
        if not os.path.isfile(index):
            raise FileNotFoundError(f"{path} is not a diffusers pipeline directory (no model_index.json)")
    elif os.path.isfile(path):
        raise FileNotFoundError(f"model path {path!r} is a file, not a pipeline directory (with model_index.json) "
                                "or a hub id")
    elif os.path.exists(path) or path.startswith((".", "/")) or path.count("/") != 1:
        raise FileNotFoundError(f"model path {path!r} does not exist (expected a pipeline directory or a hub id)")
    else:
        from huggingface_hub import hf_hub_download

        try:
            index = hf_hub_download(path, "model_index.json", local_files_only=local_files_only)
        except Exception as e:  # offline, gated (SD3.5 / FLUX.1-dev need an accepted licence), or no such repo
            raise FileNotFoundError(
                f"model path {path!r} is not a local directory, and cannot fetch {path}/model_index.json from the "
                f"Hugging Face Hub ({type(e).__name__}); check the path (relative to the working directory) or the "
                "id, and for gated models accept the licence and `huggingface-cli login`"
            ) from None
    with open(index) as f:
        return json.load(f)


def pipeline_class_name(path: str, local_files_only: bool = False) -> str:
    """The `_class_name` in `path`/model_index.json (a local dir or a hub id)."""
    return read_model_index(path, local_files_only).get("_class_name", "?")


def _is_transformers_dir(path: str) -> bool:
    from genrl.policies.dllm import is_transformers_dir

    return is_transformers_dir(path)


def load_policy(path: str, family: str | None = None, **options) -> TrainablePolicy:
    if family is None and _is_transformers_dir(path):
        family = "dllm"
    if family is None:
        index = read_model_index(path, options.get("local_files_only", False))
        family = index.get("genrl_family")
    if family is None:
        cls_name = index.get("_class_name", "?")
        if cls_name not in ADAPTERS:
            raise ValueError(f"{path}: pipeline class {cls_name!r} is not supported; supported: {', '.join(ADAPTERS)}")
        target = ADAPTERS[cls_name][1]
    elif family in FAMILIES:
        target = FAMILIES[family]
    else:
        raise ValueError(f"unknown model family {family!r}; supported: {', '.join(FAMILIES)}")
    module, cls = target.split(":")
    return getattr(importlib.import_module(module), cls).from_pretrained(path, **options)


__all__ = ["ADAPTERS", "Cond", "FlowPolicy", "TrainablePolicy", "load_policy", "pipeline_class_name",
           "read_model_index"]
