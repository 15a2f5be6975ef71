"""genrl.threads: the auto thread count follows the idle cores (from /proc/stat), split between local processes."""

import os

import pytest

from genrl import threads


def _fake_stat(monkeypatch, idle_frac: float, cores: int):
    seq = iter([(0, 0), (int(1000 * idle_frac), 1000)])
    monkeypatch.setattr(threads, "_cpu_times", lambda: next(seq))
    monkeypatch.setattr(threads, "_cores", lambda: cores)
    monkeypatch.setattr(threads.os, "cpu_count", lambda: cores)
    monkeypatch.setattr(threads.time, "sleep", lambda s: None)
    threads.auto_threads.cache_clear()


@pytest.mark.parametrize("idle_frac, procs, want", [(1.0, 1, 4), (0.5, 1, 2), (0.1, 1, 1), (1.0, 2, 2),
                                                     (0.0, 1, 1), (0.62, 1, 2)])
def test_auto_threads_uses_idle_cores(monkeypatch, idle_frac, procs, want):
    _fake_stat(monkeypatch, idle_frac, cores=4)
    assert threads.auto_threads(procs) == want
    threads.auto_threads.cache_clear()


def test_no_proc_stat_means_all_cores(monkeypatch):
    monkeypatch.setattr(threads, "_cpu_times", lambda: None)
    monkeypatch.setattr(threads, "_cores", lambda: 3)
    assert threads.idle_cores() == 3.0


def test_real_machine_reading_is_in_range():
    n = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    assert 0.0 <= threads.idle_cores(0.05) <= n
