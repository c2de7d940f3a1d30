# The user_pipeline code location: a Dagster code server (gRPC) on port 4000, and the image every
# run pod of the K8sRunLauncher starts from (deploy/helm/values.yaml, docs/deploying.md).
#
# Not built in this repository's CI (no container runtime or base images there); what CI checks is
# that the pip line below resolves against the project in a fresh venv
# (user_pipeline_tests/deploy/test_deploy_files.py). Build: docker build -t user-pipeline:TAG .

# bookworm, not the moving `3.11-slim` tag: Debian 13 (trixie) has no openjdk-17 package, and
# PySpark 4 needs Java 17 or later.
FROM python:3.11-slim-bookworm

# Java for PySpark (`local[*]` in the step's own process, or spark-submit to a cluster);
# procps because Spark's launch scripts call `ps`.
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        openjdk-17-jre-headless procps \
    && rm -rf /var/lib/apt/lists/*

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /opt/user_pipeline
COPY setup.py pyproject.toml ./
COPY user_pipeline ./user_pipeline
COPY spark_jobs ./spark_jobs

# The project with its pinned Dagster family (setup.py), plus dagster-k8s at the same release: the
# run pods load the cluster's instance (K8sRunLauncher, dagster_postgres storage) from this image.
RUN pip install --no-cache-dir . "dagster-k8s==0.29.27"

# A fixed non-root uid, so that the pod's securityContext (runAsNonRoot) can check it and the
# shared data volume can be owned by it (fsGroup 10001 in deploy/helm/values.yaml).
RUN groupadd --gid 10001 pipeline \
    && useradd --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent pipeline \
    && mkdir -p /var/lib/user_pipeline \
    && chown 10001:10001 /var/lib/user_pipeline
USER 10001:10001

# Partition files between steps: a ReadWriteMany volume is mounted here in the cluster.
ENV USER_PIPELINE_DATA_DIR=/var/lib/user_pipeline

EXPOSE 4000
# No ENTRYPOINT: the Helm chart passes its own `args` (`dagster code-server start -h 0.0.0.0
# -p 4000 ...codeServerArgs`), and run pods run `dagster api execute_run ...` in this image.
CMD ["dagster", "code-server", "start", "-h", "0.0.0.0", "-p", "4000", "-m", "user_pipeline.definitions"]
