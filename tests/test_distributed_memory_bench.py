"""benchmarks/memory_bench.py runs end to end on a very small stand-in (plain and FSDP2-sharded settings)."""

from __future__ import annotations

import json
import os
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "benchmarks"))


@pytest.mark.slow
@pytest.mark.distributed
def test_memory_bench_smoke(tmp_path):
    import memory_bench

    out = tmp_path / "mem.json"
    assert memory_bench.main(["--layers", "2", "--hidden", "128", "--resolution", "64", "--rank", "4",
                              "--text-tokens", "16", "--settings", "plain,fsdp2", "--json", str(out)]) == 0
    res = {r["setting"]: r for r in json.loads(out.read_text())["results"]}
    assert res["plain"]["processes"] == 1 and not res["plain"]["sharded"]
    assert res["fsdp2"]["processes"] == 2 and res["fsdp2"]["sharded"]
    assert res["plain"]["lora_params"] == res["fsdp2"]["lora_params"] > 0
    assert all(r["peak_mb"] > 0 for r in res.values())
