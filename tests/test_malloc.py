"""genrl.malloc: with glibc, freed blocks stay mapped (no page faults when the same sizes come back); opt-out by env."""

import ctypes
import ctypes.util
import os
import subprocess
import sys

import pytest

from genrl import malloc

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Two 20 MiB blocks and a 6 MiB one, touched and freed, ten times over: what a training step does to malloc.
CHURN = """
import ctypes, ctypes.util, resource, sys
libc = ctypes.CDLL(ctypes.util.find_library("c"))
libc.malloc.restype, libc.malloc.argtypes, libc.free.argtypes = ctypes.c_void_p, [ctypes.c_size_t], [ctypes.c_void_p]
if sys.argv[1] == "1":
    from genrl.malloc import keep_freed_memory
    assert keep_freed_memory()
def churn():
    sizes = (20 << 20, 20 << 20, 6 << 20)
    blocks = [libc.malloc(s) for s in sizes]
    for b, s in zip(blocks, sizes):
        ctypes.memset(b, 1, s)
    for b in blocks:
        libc.free(b)
churn(); churn()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(10):
    churn()
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def _is_glibc() -> bool:
    try:
        return hasattr(ctypes.CDLL(ctypes.util.find_library("c")), "gnu_get_libc_version")
    except (OSError, TypeError):
        return False


def _faults(tuned: bool) -> int:
    out = subprocess.run([sys.executable, "-c", CHURN, "1" if tuned else "0"], cwd=ROOT, check=True,
                         capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=ROOT))
    return int(out.stdout.strip())


@pytest.mark.skipif(not _is_glibc(), reason="the settings are glibc's")
def test_freed_blocks_stay_mapped():
    default, tuned = _faults(False), _faults(True)
    assert default > 10_000  # glibc's defaults trim the freed heap top and fault it back in on every round
    assert tuned < 500


def test_opt_out_by_environment(monkeypatch):
    monkeypatch.setenv("GENRL_MALLOC_TUNING", "0")
    assert malloc.keep_freed_memory.__wrapped__() is False
