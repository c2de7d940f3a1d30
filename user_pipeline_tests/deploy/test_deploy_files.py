"""Protects the deployment files: chart-valid, secret-free Helm values, a loadable instance, a resolvable image."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path
from urllib.parse import urlsplit

import dagster as dg
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from user_pipeline.settings import SETTINGS, settings_problems
from user_pipeline_tests.conftest import skip_or_fail
from user_pipeline_tests.postgres_cluster import USER, ThrowawayPostgres

ROOT = Path(__file__).resolve().parents[2]
VALUES_PATH = ROOT / "deploy" / "helm" / "values.yaml"
INSTANCE_PATH = ROOT / "deploy" / "k8s" / "dagster.yaml"
LOCAL_INSTANCE_PATH = ROOT / "dagster_home" / "dagster.yaml"
DOCKERFILE = ROOT / "Dockerfile"
DEPLOYING_DOC = ROOT / "docs" / "deploying.md"

# The release the chart renders deploy/k8s/dagster.yaml for (docs/deploying.md installs it so).
RELEASE, NAMESPACE = "user-pipeline", "data"
DAGSTER_VERSION, INTEGRATION_VERSION = "1.13.27", "0.29.27"

# --- Facts about Dagster's Helm chart, dagster/dagster 1.13.27 -------------------------------------
# The chart's values.schema.json is generated from the pydantic models under helm/dagster/schema; the
# keys below are those models' fields, for the sections these values use. The chart is not on any
# package registry this CI reaches, so the facts are vendored here rather than the whole chart; only
# sections we use are listed, so a key outside them is reported as unknown too. Sources
# (github.com/dagster-io/dagster, files at the named commits):
#   schema/charts/dagster/values.py                     @0f2d9d8e (top level, with `concurrency`)
#   schema/charts/dagster/subschema/concurrency.py      @0f2d9d8e
#   schema/charts/dagster/subschema/daemon.py           (Daemon, RunCoordinator, RunRetries; blob 26056388421 of the index)
#   schema/charts/dagster/subschema/run_launcher.py     (K8sRunLauncherConfig with runK8sConfig)
#   schema/charts/dagster/subschema/postgresql.py       (PostgreSQL with pool)
#   schema/charts/dagster/subschema/global_.py          @53ff29f3
#   schema/charts/dagster_user_deployments/subschema/user_deployments.py (UserDeployment, codeServerArgs)
#   templates/configmap-instance.yaml                   @99dc34fc (runMonitoring keys the chart reads;
#                                                       the schema types runMonitoring as dict[str, Any])
FREE = None  # a Kubernetes object or free-form mapping: the chart passes it through as is
IMAGE = {"repository": FREE, "tag": FREE, "pullPolicy": FREE}
ENV_SOURCE = {"name": FREE, "optional": FREE}  # io.k8s.api.core.v1.{Secret,ConfigMap}EnvSource
TAG_LIMIT = {"key": FREE, "value": FREE, "limit": FREE}
CHART_KEYS: dict = {
    "global": {
        "postgresqlSecretName": FREE,
        "dagsterHome": FREE,
        "serviceAccountName": FREE,
        "celeryConfigSecretName": FREE,
        "dagsterInstanceConfigMap": FREE,
    },
    "generatePostgresqlPasswordSecret": FREE,
    "generateCeleryConfigSecret": FREE,
    "postgresql": {
        "image": IMAGE,
        "enabled": FREE,
        "postgresqlHost": FREE,
        "postgresqlUsername": FREE,
        "postgresqlPassword": FREE,
        "postgresqlDatabase": FREE,
        "postgresqlParams": FREE,
        "postgresqlScheme": FREE,
        "service": {"port": FREE},
        "pool": {"size": FREE, "maxOverflow": FREE, "recycle": FREE, "mode": FREE},
    },
    "dagster-user-deployments": {
        "enabled": FREE,
        "enableSubchart": FREE,
        "imagePullSecrets": FREE,
        "deployments": [
            {
                "name": FREE,
                "image": IMAGE,
                "dagsterApiGrpcArgs": FREE,
                "codeServerArgs": FREE,
                "includeConfigInLaunchedRuns": {"enabled": FREE},
                "deploymentNamespace": FREE,
                "port": FREE,
                "replicaCount": FREE,
                "env": FREE,
                "envConfigMaps": [ENV_SOURCE],
                "envSecrets": [ENV_SOURCE],
                "annotations": FREE,
                "nodeSelector": FREE,
                "affinity": FREE,
                "tolerations": FREE,
                "podSecurityContext": FREE,
                "securityContext": FREE,
                "resources": FREE,
                "livenessProbe": FREE,
                "readinessProbe": FREE,
                "startupProbe": FREE,
                "labels": FREE,
                "volumeMounts": FREE,
                "volumes": FREE,
                "schedulerName": FREE,
                "initContainers": FREE,
                "sidecarContainers": FREE,
                "deploymentStrategy": FREE,
            }
        ],
    },
    "runLauncher": {
        "type": FREE,
        "config": {
            "k8sRunLauncher": {
                "image": IMAGE,
                "imagePullPolicy": FREE,
                "jobNamespace": FREE,
                "loadInclusterConfig": FREE,
                "kubeconfigFile": FREE,
                "envConfigMaps": [ENV_SOURCE],
                "envSecrets": [ENV_SOURCE],
                "envVars": FREE,
                "volumeMounts": FREE,
                "volumes": FREE,
                "labels": FREE,
                "failPodOnRunFailure": FREE,
                "resources": FREE,
                "schedulerName": FREE,
                "securityContext": FREE,
                "runK8sConfig": {
                    "containerConfig": FREE,
                    "podSpecConfig": FREE,
                    "podTemplateSpecMetadata": FREE,
                    "jobSpecConfig": FREE,
                    "jobMetadata": FREE,
                },
            },
        },
    },
    "dagsterDaemon": {
        "enabled": FREE,
        "image": IMAGE,
        "heartbeatTolerance": FREE,
        "env": FREE,
        "envConfigMaps": [ENV_SOURCE],
        "envSecrets": [ENV_SOURCE],
        "deploymentLabels": FREE,
        "labels": FREE,
        "nodeSelector": FREE,
        "affinity": FREE,
        "tolerations": FREE,
        "podSecurityContext": FREE,
        "securityContext": FREE,
        "resources": FREE,
        "checkDbReadyInitContainer": FREE,
        "livenessProbe": FREE,
        "readinessProbe": FREE,
        "startupProbe": FREE,
        "annotations": FREE,
        "schedulerName": FREE,
        "logFormat": FREE,
        "volumeMounts": FREE,
        "volumes": FREE,
        "initContainerResources": FREE,
        "extraContainers": FREE,
        "extraPrependedInitContainers": FREE,
        "runCoordinator": {
            "enabled": FREE,
            "type": FREE,
            "config": {
                "queuedRunCoordinator": {
                    "maxConcurrentRuns": FREE,
                    "tagConcurrencyLimits": [TAG_LIMIT],
                    "dequeueIntervalSeconds": FREE,
                    "dequeueNumWorkers": FREE,
                    "dequeueUseThreads": FREE,
                    "blockOpConcurrencyLimitedRuns": {"enabled": FREE, "opConcurrencySlotBuffer": FREE},
                },
            },
        },
        "runMonitoring": {
            "enabled": FREE,
            "startTimeoutSeconds": FREE,
            "cancelTimeoutSeconds": FREE,
            "maxRuntimeSeconds": FREE,
            "maxResumeRunAttempts": FREE,
            "pollIntervalSeconds": FREE,
            "freeSlotsAfterRunEndSeconds": FREE,
        },
        "runRetries": {"enabled": FREE, "maxRetries": FREE, "retryOnAssetOrOpFailure": FREE},
        "sensors": {"useThreads": FREE, "numWorkers": FREE, "numSubmitWorkers": FREE},
        "schedules": {"useThreads": FREE, "numWorkers": FREE, "numSubmitWorkers": FREE},
        "backfills": {"useThreads": FREE, "numWorkers": FREE, "numSubmitWorkers": FREE},
    },
    "concurrency": {
        "enabled": FREE,
        "pools": {"defaultLimit": FREE, "granularity": FREE, "opGranularityRunBuffer": FREE},
        "runs": {"maxConcurrentRuns": FREE, "tagConcurrencyLimits": [TAG_LIMIT]},
    },
    "telemetry": {"enabled": FREE},
}
CHART_ENUMS = {
    ("runLauncher", "type"): {"CeleryK8sRunLauncher", "K8sRunLauncher", "CustomRunLauncher"},
    ("dagsterDaemon", "runCoordinator", "type"): {"QueuedRunCoordinator", "CustomRunCoordinator"},
    ("runLauncher", "config", "k8sRunLauncher", "imagePullPolicy"): {"Always", "IfNotPresent", "Never"},
    ("concurrency", "pools", "granularity"): {"run", "op"},
}

# The K8sRunLauncher's config fields in dagster-k8s 0.29.27 (dagster_k8s/job.py,
# DagsterK8sJobConfig.config_type_run_launcher + config_type_job + config_type_container).
K8S_RUN_LAUNCHER_FIELDS = {
    "dagster_home",
    "env_config_maps",
    "env_secrets",
    "env_vars",
    "fail_pod_on_run_failure",
    "image_pull_policy",
    "image_pull_secrets",
    "instance_config_map",
    "job_image",
    "job_namespace",
    "k8s_api_ssl_ca_cert_file",
    "kubeconfig_file",
    "labels",
    "load_incluster_config",
    "only_allow_user_defined_env_vars",
    "only_allow_user_defined_k8s_config_fields",
    "postgres_password_secret",
    "resources",
    "run_k8s_config",
    "scheduler_name",
    "security_context",
    "service_account_name",
    "volume_mounts",
    "volumes",
}

# How the settings without a plain default reach the pods (docs/deploying.md creates both objects).
FROM_CONFIGMAP = {"USER_PIPELINE_API_URL", "USER_PIPELINE_UI_URL"}
FROM_SECRET = {"USER_PIPELINE_WAREHOUSE_URL", "USER_PIPELINE_ALERT_WEBHOOK_URL", "USER_PIPELINE_REDIS_PASSWORD"}
DERIVED_DEFAULT = {"USER_PIPELINE_REGISTRY_START_DATE"}  # the first partition


def unknown_keys(values: object, facts: object, path: tuple = ()) -> list[str]:
    """Dotted paths in `values` that the chart's schema facts do not have."""
    if facts is FREE or values is None:  # null in Helm values removes the chart's default
        return []
    if isinstance(facts, list):
        if not isinstance(values, list):
            return [f"{'.'.join(path)}: expected a list"]
        return [
            problem
            for index, item in enumerate(values)
            for problem in unknown_keys(item, facts[0], (*path, f"[{index}]"))
        ]
    if not isinstance(values, Mapping):
        return [f"{'.'.join(path)}: expected a mapping"]
    problems = []
    for key, value in values.items():
        if key not in facts:
            problems.append(".".join((*path, str(key))))
        else:
            problems.extend(unknown_keys(value, facts[key], (*path, str(key))))
    return problems


def pluck(mapping: Mapping, path: tuple) -> object:
    for key in path:
        mapping = mapping[key]
    return mapping


def camel_to_snake(mapping: object) -> object:
    """The chart's camelCase keys in the instance's spelling (maxConcurrentRuns -> max_concurrent_runs);
    a tag limit's `value` mapping is Dagster's own spelling and kept."""
    if isinstance(mapping, list):
        return [camel_to_snake(item) for item in mapping]
    if not isinstance(mapping, Mapping):
        return mapping
    return {
        re.sub(r"(?<!^)(?=[A-Z])", "_", key).lower(): value if key == "value" else camel_to_snake(value)
        for key, value in mapping.items()
    }


def strings(node: object) -> Iterator[str]:
    if isinstance(node, Mapping):
        for value in node.values():
            yield from strings(value)
    elif isinstance(node, list):
        for item in node:
            yield from strings(item)
    elif isinstance(node, str):
        yield node


@pytest.fixture(scope="module")
def values() -> dict:
    return yaml.safe_load(VALUES_PATH.read_text())


@pytest.fixture(scope="module")
def instance_yaml() -> dict:
    return yaml.safe_load(INSTANCE_PATH.read_text())


@pytest.fixture(scope="module")
def deployment(values: dict) -> dict:
    (only,) = values["dagster-user-deployments"]["deployments"]
    return only


# --- Helm values ----------------------------------------------------------------------------------


def test_every_values_key_exists_in_the_chart_schema(values: dict) -> None:
    assert unknown_keys(values, CHART_KEYS) == []
    for path, allowed in CHART_ENUMS.items():
        assert pluck(values, path) in allowed, path


def test_the_key_check_reports_misspelt_and_invented_keys(values: dict) -> None:
    values = json.loads(json.dumps(values))
    values["runLauncher"]["config"]["k8sRunLauncher"]["failPodOnRunFailur"] = True
    values["dagster-user-deployments"]["deployments"][0]["envSecret"] = [{"name": "x"}]
    values["dagsterDaemon"]["runMonitoring"]["maxRuntime"] = 60
    assert unknown_keys(values, CHART_KEYS) == [
        "dagster-user-deployments.deployments.[0].envSecret",
        "runLauncher.config.k8sRunLauncher.failPodOnRunFailur",
        "dagsterDaemon.runMonitoring.maxRuntime",
    ]


@settings(max_examples=50, deadline=None)
@given(key=st.text(min_size=1, max_size=30), depth=st.integers(min_value=0, max_value=3))
def test_any_key_the_chart_does_not_have_is_reported(key: str, depth: int) -> None:
    section_paths = [(), ("dagsterDaemon",), ("dagsterDaemon", "runRetries"), ("concurrency", "runs")]
    path = section_paths[depth]
    facts = pluck(CHART_KEYS, path)
    values = yaml.safe_load(VALUES_PATH.read_text())
    if key in facts:
        return
    pluck(values, path)[key] = "x"
    assert unknown_keys(values, CHART_KEYS) == [".".join((*path, key))]


def test_values_hold_no_password(values: dict, deployment: dict) -> None:
    assert values["generatePostgresqlPasswordSecret"] is False
    assert values["global"]["postgresqlSecretName"]
    assert values["postgresql"]["postgresqlPassword"] == ""
    for text in strings(values):
        parts = urlsplit(text)
        assert not (parts.scheme and parts.password), f"a URL with a password in the values: {parts.scheme}://..."
    assert not FROM_SECRET & set(deployment["env"]), "secret-bearing settings must come from the Secret"
    assert deployment["envSecrets"], "the code location needs the pipeline's Secret"


def test_env_states_every_setting_at_its_declared_default(deployment: dict) -> None:
    env = deployment["env"]
    assert all(isinstance(value, str) for value in env.values()), "the chart's env values are strings"
    declared = {setting.env_var: setting for setting in SETTINGS}
    pipeline_env = {name for name in env if name.startswith("USER_PIPELINE_") or name in declared}
    assert pipeline_env - set(declared) == set(), "values.yaml sets variables the pipeline does not declare"
    unaccounted = set(declared) - pipeline_env - FROM_CONFIGMAP - FROM_SECRET - DERIVED_DEFAULT
    assert unaccounted == set(), f"settings.py declares these; say in values.yaml how the pods get them: {unaccounted}"
    for name in pipeline_env - {"USER_PIPELINE_DATA_DIR"}:
        assert env[name] == str(declared[name].info.default), name
    assert (FROM_CONFIGMAP | FROM_SECRET) & pipeline_env == set()
    assert settings_problems(env) == [], "the pipeline's own check refuses these values"


def test_data_directory_is_the_shared_volume(deployment: dict) -> None:
    (volume,) = deployment["volumes"]
    (mount,) = deployment["volumeMounts"]
    assert mount["name"] == volume["name"]
    assert mount["mountPath"] == deployment["env"]["USER_PIPELINE_DATA_DIR"]
    assert deployment["includeConfigInLaunchedRuns"]["enabled"] is True, "run pods must mount it too"
    dockerfile = DOCKERFILE.read_text()
    assert f"ENV USER_PIPELINE_DATA_DIR={mount['mountPath']}" in dockerfile


def test_code_server_port_and_module_match_the_image(deployment: dict) -> None:
    cmd = json.loads(re.search(r"^CMD (\[.*\])$", DOCKERFILE.read_text(), re.MULTILINE).group(1))
    assert cmd[:3] == ["dagster", "code-server", "start"]
    assert cmd[cmd.index("-p") + 1] == str(deployment["port"])
    assert cmd[cmd.index("-m") + 1] == deployment["codeServerArgs"][deployment["codeServerArgs"].index("-m") + 1]
    assert f"EXPOSE {deployment['port']}" in DOCKERFILE.read_text()


def test_the_deployment_doc_creates_every_object_the_values_name(values: dict, deployment: dict) -> None:
    doc = DEPLOYING_DOC.read_text()
    for secret in [values["global"]["postgresqlSecretName"], *(s["name"] for s in deployment["envSecrets"])]:
        assert re.search(rf"kubectl (-n {NAMESPACE} )?create secret generic {secret} ", doc), secret
    for config_map in (c["name"] for c in deployment["envConfigMaps"]):
        assert re.search(rf"kubectl (-n {NAMESPACE} )?create configmap {config_map} ", doc), config_map
    assert "--from-literal=postgresql-password=" in doc  # the key the chart reads
    for name in FROM_CONFIGMAP | FROM_SECRET:
        assert f"--from-literal={name}=" in doc, name
    claim = deployment["volumes"][0]["persistentVolumeClaim"]["claimName"]
    assert f"name: {claim}" in doc and "ReadWriteMany" in doc


# --- The instance --------------------------------------------------------------------------------


def test_concurrency_run_retries_and_the_default_maximum_run_time_mirror_the_local_instance(
    values: dict, instance_yaml: dict
) -> None:
    local = yaml.safe_load(LOCAL_INSTANCE_PATH.read_text())
    chart_concurrency = {key: value for key, value in values["concurrency"].items() if key != "enabled"}
    assert values["concurrency"]["enabled"] is True
    assert camel_to_snake(chart_concurrency) == local["concurrency"] == instance_yaml["concurrency"]
    assert "default_limit" not in local["concurrency"]["pools"], "it would limit every pool, not only users_api"
    assert camel_to_snake(values["dagsterDaemon"]["runRetries"]) == local["run_retries"] == instance_yaml["run_retries"]
    # A run without its own dagster/max_runtime tag is stopped after the same time everywhere.
    monitoring = values["dagsterDaemon"]["runMonitoring"]
    assert monitoring["enabled"] is local["run_monitoring"]["enabled"] is True
    assert (
        monitoring["maxRuntimeSeconds"]
        == local["run_monitoring"]["max_runtime_seconds"]
        == instance_yaml["run_monitoring"]["max_runtime_seconds"]
    )
    # The chart refuses limits set both here and on the run coordinator (templates/helpers/instance/_concurrency.tpl),
    # and Dagster refuses an instance with both (dagster_instance_config).
    queued = values["dagsterDaemon"]["runCoordinator"]["config"]["queuedRunCoordinator"]
    assert queued["maxConcurrentRuns"] is None and queued["tagConcurrencyLimits"] == []
    assert queued["blockOpConcurrencyLimitedRuns"] is None


def test_instance_yaml_is_what_the_chart_renders_from_the_values(values: dict, instance_yaml: dict) -> None:
    """The chart's templates (configmap-instance.yaml @99dc34fc, helpers/instance/_postgresql.tpl,
    _run-launcher.tpl @a07d616f) applied to the keys these values set."""
    pg = values["postgresql"]
    postgres_db = {
        "username": pg["postgresqlUsername"],
        "password": {"env": "DAGSTER_PG_PASSWORD"},
        "hostname": pg["postgresqlHost"],
        "db_name": pg["postgresqlDatabase"],
        "port": pg["service"]["port"],
        "params": pg["postgresqlParams"],
        "scheme": pg["postgresqlScheme"],
    }
    for storage in ("run_storage", "event_log_storage", "schedule_storage"):
        assert instance_yaml[storage]["config"] == {"postgres_db": postgres_db}, storage
    launcher = values["runLauncher"]["config"]["k8sRunLauncher"]
    assert instance_yaml["run_launcher"] == {
        "module": "dagster_k8s",
        "class": "K8sRunLauncher",
        "config": {
            "load_incluster_config": launcher["loadInclusterConfig"],
            "job_namespace": NAMESPACE,
            "image_pull_policy": launcher["imagePullPolicy"],
            "service_account_name": values["global"]["serviceAccountName"],
            "dagster_home": "/opt/dagster/dagster_home",
            "instance_config_map": f"{RELEASE}-dagster-instance",
            "postgres_password_secret": values["global"]["postgresqlSecretName"],
            "resources": launcher["resources"],
            "fail_pod_on_run_failure": True,
            "security_context": launcher["securityContext"],
            "run_k8s_config": {"pod_spec_config": launcher["runK8sConfig"]["podSpecConfig"]},
        },
    }
    pod_security = launcher["runK8sConfig"]["podSpecConfig"]["securityContext"]
    deployment = values["dagster-user-deployments"]["deployments"][0]
    assert pod_security == deployment["podSecurityContext"], "run pods run as the code location does"
    assert f"USER {pod_security['runAsUser']}:{pod_security['runAsGroup']}" in DOCKERFILE.read_text()
    assert set(instance_yaml["run_launcher"]["config"]) <= K8S_RUN_LAUNCHER_FIELDS
    # _run-coordinator.tpl renders `config` only from the queuedRunCoordinator values that are set.
    queued = values["dagsterDaemon"]["runCoordinator"]["config"]["queuedRunCoordinator"]
    assert not any(queued.values())
    assert instance_yaml["run_coordinator"] == {
        "module": "dagster.core.run_coordinator",
        "class": values["dagsterDaemon"]["runCoordinator"]["type"],
    }
    monitoring = {key: value for key, value in values["dagsterDaemon"]["runMonitoring"].items() if value is not None}
    assert instance_yaml["run_monitoring"] == camel_to_snake(monitoring)
    assert instance_yaml["telemetry"] == values["telemetry"]


def _instance_home(tmp_path: Path, config: dict, postgres: ThrowawayPostgres, database: str) -> Path:
    """The instance YAML with only where its database lives replaced by the throwaway server."""
    config = json.loads(json.dumps(config))
    for storage in ("run_storage", "event_log_storage", "schedule_storage"):
        postgres_db = config[storage]["config"]["postgres_db"]
        postgres_db.update(hostname="127.0.0.1", port=postgres.port, username=USER, db_name=database)
        postgres_db["params"] = {"sslmode": "disable"}
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text(yaml.safe_dump(config))
    return home


@pytest.fixture
def instance_database(postgres: ThrowawayPostgres, monkeypatch: pytest.MonkeyPatch) -> str:
    database = f"instance_{uuid.uuid4().hex[:12]}"
    postgres.create_database(database)
    monkeypatch.setenv("DAGSTER_PG_PASSWORD", postgres.password)
    return database


def test_instance_yaml_loads_with_dagsters_validation(
    instance_yaml: dict,
    postgres: ThrowawayPostgres,
    instance_database: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DAGSTER_HOME", str(_instance_home(tmp_path, instance_yaml, postgres, instance_database)))
    with dg.DagsterInstance.get() as instance:
        assert type(instance.run_coordinator).__name__ == "QueuedRunCoordinator"
        assert instance.run_monitoring_enabled
        assert instance.run_monitoring_start_timeout_seconds == 300
        assert instance.run_retries_enabled and instance.run_retries_max_retries == 1
        assert instance.run_monitoring_max_runtime_seconds == 10800
        assert instance.get_concurrency_config().pool_config.default_pool_limit is None
        assert instance.get_runs() == []  # storage reached and migrated on the real server


def test_instance_validation_rejects_a_misspelt_key(
    instance_yaml: dict,
    postgres: ThrowawayPostgres,
    instance_database: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    broken = json.loads(json.dumps(instance_yaml))
    broken["run_monitoring"]["start_timeout_secs"] = broken["run_monitoring"].pop("start_timeout_seconds")
    monkeypatch.setenv("DAGSTER_HOME", str(_instance_home(tmp_path, broken, postgres, instance_database)))
    with pytest.raises(dg.DagsterInvalidConfigError, match="start_timeout_secs"):
        dg.DagsterInstance.get()


# --- The image's install line ----------------------------------------------------------------------


def dockerfile_pip_requirements() -> list[str]:
    """The requirement arguments of the Dockerfile's `pip install` line (options dropped)."""
    (line,) = [line for line in DOCKERFILE.read_text().splitlines() if line.startswith("RUN pip install")]
    return [arg for arg in shlex.split(line)[3:] if not arg.startswith("-")]


def test_dockerfile_installs_the_project_and_dagster_k8s_at_the_family_release() -> None:
    assert dockerfile_pip_requirements() == [".", f"dagster-k8s=={INTEGRATION_VERSION}"]
    setup = (ROOT / "setup.py").read_text()
    assert f'"dagster=={DAGSTER_VERSION}"' in setup and f'"dagster-postgres=={INTEGRATION_VERSION}"' in setup
    base = re.search(r"^FROM python:(\d+\.\d+)-slim-bookworm$", DOCKERFILE.read_text(), re.MULTILINE)
    assert base, "the base image is python:X.Y-slim-bookworm (Debian 12 has openjdk-17)"
    assert "openjdk-17-jre-headless" in DOCKERFILE.read_text()
    assert re.search(r"^USER 10001:10001$", DOCKERFILE.read_text(), re.MULTILINE)


def test_the_image_bakes_in_no_secret_and_its_context_holds_only_what_it_copies() -> None:
    dockerfile = DOCKERFILE.read_text()
    for line in dockerfile.splitlines():
        if line.startswith(("ENV", "ARG")):
            assert not re.search(r"PASSWORD|SECRET|TOKEN|WAREHOUSE_URL|WEBHOOK", line, re.IGNORECASE), line
    copied = {
        source.rstrip("/")
        for line in dockerfile.splitlines()
        if line.startswith("COPY ")
        for source in line.split()[1:-1]
    }
    ignore = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert ignore[0] == "*", "the build context starts from nothing"
    assert {line[1:] for line in ignore if line.startswith("!")} == copied


UNREACHABLE = (
    "NewConnectionError",
    "Temporary failure in name resolution",
    "Network is unreachable",
    "ProxyError",
    "Max retries exceeded",
    "Could not fetch URL",
)


def test_dockerfile_pip_line_resolves_in_a_fresh_venv(tmp_path: Path) -> None:
    base = re.search(r"^FROM python:(\d+\.\d+)-", DOCKERFILE.read_text(), re.MULTILINE).group(1)
    if f"{sys.version_info.major}.{sys.version_info.minor}" != base:
        skip_or_fail(f"the image's Python is {base}, this interpreter is {sys.version.split()[0]}")
    # An empty venv (no pip of its own, nothing installed) that this pip resolves for (`--python`):
    # what `pip install` in the image would pick, without installing 130-odd packages.
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    report = tmp_path / "report.json"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(venv / "bin" / "python"),
            "install",
            "--dry-run",
            "--quiet",
            "--report",
            str(report),
            *dockerfile_pip_requirements(),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    if result.returncode != 0 and any(sign in result.stderr for sign in UNREACHABLE):
        skip_or_fail(f"the package index is unreachable: {result.stderr.strip().splitlines()[-1]}")
    assert result.returncode == 0, result.stderr
    resolved = {
        re.sub(r"[-_.]+", "-", item["metadata"]["name"]).lower(): item["metadata"]["version"]
        for item in json.loads(report.read_text())["install"]
    }
    assert resolved["user-pipeline"] == "0.1.0"
    assert resolved["dagster"] == DAGSTER_VERSION
    for integration in ("dagster-k8s", "dagster-postgres", "dagster-pyspark"):
        assert resolved[integration] == INTEGRATION_VERSION, integration
