"""The benchmark's process-tree meter counts the whole tree (orphans, reaped children) and nothing outside it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]

# Burns `cpu` seconds of CPU holding `mb` MB resident.
BURN = (
    "import time\nblock = bytearray({mb} * 2**20)\nfor i in range(0, len(block), 4096): block[i] = 1\n"
    "end = time.process_time() + {cpu}\nwhile time.process_time() < end: pass\n"
)


def measure(child_code: str, outsider_cpu: float = 0.0, stop_on_line: bool = False) -> dict:
    """Runs the meter in a fresh interpreter (it becomes a child subreaper, which pytest must not).
    With `stop_on_line`, the meter stops when the child prints a line, the child still alive."""
    script = f"""
import json, subprocess, sys
from benchmarks.proctree import TreeMeter, become_subreaper
assert become_subreaper(True)
outsider = subprocess.Popen([sys.executable, "-c", {BURN.format(mb=1, cpu=outsider_cpu)!r}]) if {outsider_cpu!r} else None
with TreeMeter(protected=[outsider.pid] if outsider else []) as meter:
    process = subprocess.Popen([sys.executable, "-c", {child_code!r}], stdout=subprocess.PIPE, text=True)
    meter.add_root(process.pid)
    if {stop_on_line!r}:
        process.stdout.readline()
        left = []
    else:
        process.wait()
        left = meter.settle(timeout=30)
process.kill()
process.wait()
if outsider:
    outsider.wait()
print(json.dumps({{"cpu": meter.cpu_seconds, "peak_mb": meter.peak_rss_bytes / 2**20, "pids": len(meter.seen),
                  "left": left, "names": sorted({{name for _, name, _ in meter.peak_processes}})}}))
"""
    done = subprocess.run([sys.executable, "-c", script], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_an_orphaned_grandchild_is_adopted_and_its_cpu_and_memory_counted():
    child = (
        "import subprocess, sys, time\n"
        f"subprocess.Popen([sys.executable, '-c', {BURN.format(mb=150, cpu=0.6)!r}])\n"  # not waited for: orphaned
        "time.sleep(0.3)\n"  # long enough to be sampled (every 50 ms) before it exits
    )
    result = measure(child)

    assert result["left"] == []
    assert result["pids"] == 2
    assert 0.6 <= result["cpu"] < 3.0
    assert 150 <= result["peak_mb"] < 400


def test_a_grandchild_its_parent_reaped_is_counted_through_the_parents_counters():
    # Like a daemon that reaped a run worker: the parent is still alive when the meter stops.
    child = (
        "import subprocess, sys, time\n"
        f"subprocess.run([sys.executable, '-c', {BURN.format(mb=1, cpu=0.6)!r}], check=True)\n"
        "print('reaped', flush=True)\n"
        "time.sleep(60)\n"
    )
    result = measure(child, stop_on_line=True)

    assert 0.6 <= result["cpu"] < 3.0


def test_a_process_outside_the_tree_is_not_counted():
    result = measure(BURN.format(mb=1, cpu=0.1), outsider_cpu=1.0)

    assert result["pids"] == 1
    assert 0.1 <= result["cpu"] < 0.8


def test_a_child_there_at_the_start_and_reaped_in_the_window_counts_only_its_cpu_in_the_window():
    # Like a run worker of an earlier benchmark mode that its code server reaps during the next
    # mode: its CPU from before the meter started must not come back through its parent's counters
    # (it did: a range run "used" 55 CPU s in 16 s on 2 cores).
    burn = BURN.format(mb=1, cpu=1.0) + "print('burnt', flush=True)\ntime.sleep(0.6)\n"
    parent = (
        "import subprocess, sys\n"
        f"child = subprocess.Popen([sys.executable, '-c', {burn!r}], stdout=subprocess.PIPE, text=True)\n"
        "print(child.stdout.readline().strip(), flush=True)\n"
        "child.wait()\n"
        "print('reaped', flush=True)\n"
        "sys.stdin.readline()\n"
    )
    script = f"""
import json, subprocess, sys
from benchmarks.proctree import TreeMeter, become_subreaper
assert become_subreaper(True)
parent = subprocess.Popen([sys.executable, "-c", {parent!r}], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
assert parent.stdout.readline().strip() == "burnt"
with TreeMeter(roots=[parent.pid], protected=[parent.pid]) as meter:
    assert parent.stdout.readline().strip() == "reaped"
parent.stdin.close()
parent.wait()
print(json.dumps({{"cpu": meter.cpu_seconds, "pids": len(meter.seen)}}))
"""
    done = subprocess.run([sys.executable, "-c", script], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)

    assert result["pids"] == 2  # the child was in the tree from the start
    assert 0.0 <= result["cpu"] < 0.5, result
