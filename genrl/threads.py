"""CPU thread count for torch: as many threads as there are idle cores, measured when a run starts.

Measured on the 2-core CPU machine (benchmarks/roofline.md): on an idle machine 2 threads make a demo step 1.6-1.95x
faster than 1; with one core taken by another process, 2 threads make it 2.3-2.6x slower than 1 (the two threads wait
for each other on every small op). So `run.threads: 0` (auto) samples /proc/stat for a moment and uses
round(idle cores) / (processes on this node) threads, at least 1; anything else is taken as given. The thread count
can change CPU rounding (reductions split by thread; on some hosts 1 and 2 threads agree bit for bit, on others to
~1e-6), so a run is deterministic for a given count, and the trainer saves the count in its checkpoints: an auto
run resumes with the count it started with.
"""

from __future__ import annotations

import functools
import os
import time


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def _cpu_times() -> tuple[int, int] | None:
    """(idle, total) jiffies over all CPUs from /proc/stat, or None where there is none."""
    try:
        with open("/proc/stat") as f:
            vals = [int(v) for v in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    idle = vals[3] + (vals[4] if len(vals) > 4 else 0)  # idle + iowait
    return idle, sum(vals[:8])


def idle_cores(interval: float = 0.2) -> float:
    """Cores idle over the next `interval` seconds (all cores when /proc/stat is not readable)."""
    a = _cpu_times()
    if a is None:
        return float(_cores())
    time.sleep(interval)
    b = _cpu_times()
    total = b[1] - a[1]
    if total <= 0:
        return float(_cores())
    n_all = os.cpu_count() or 1
    return min(float(_cores()), n_all * (b[0] - a[0]) / total)


@functools.cache
def auto_threads(local_processes: int = 1) -> int:
    """Threads for one of `local_processes` processes on this node: the idle cores split between them (>= 1).
    Measured once per process."""
    return max(1, int(idle_cores() + 0.5) // max(1, local_processes))
