"""Benchmarks of the users pipeline: orchestration overhead and scaling against the same work
done without an orchestrator. Entry point: ``python -m benchmarks.run [--smoke]``; see
docs/benchmarks.md."""
