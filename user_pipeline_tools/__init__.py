"""Tooling around the pipeline, not part of it: what `make ui`, `make demo`, `make spark-cluster`,
the tests and the benchmarks start beside it (the bundled randomuser-compatible API server, a
standalone Spark cluster, dagster-webserver + dagster-daemon launchers). The pipeline
(`user_pipeline`) never imports this package; this package may import the pipeline.
"""
