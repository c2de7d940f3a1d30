"""The benchmark script runs end to end at tiny sizes (bare, in process, daemon backfills), so it cannot rot."""

from benchmarks.run import run_smoke


def test_the_benchmark_smoke_run_succeeds():
    assert run_smoke() == 0
