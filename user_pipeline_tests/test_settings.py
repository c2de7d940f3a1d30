"""Settings: each declared once on its field (default, bounds), bound to its environment variable
with dg.EnvVar, read from the environment only when the definitions load or a run starts; the
README's table is generated from the declarations; a bad value is named by its variable, in one
line, as the run's failure message, before any work and without retries."""

import os
import subprocess
import sys
import textwrap

import dagster as dg
import pytest
from hypothesis import given
from hypothesis import strategies as st

from user_pipeline.definitions import resources
from user_pipeline.settings import (
    SETTINGS,
    AutomationSettings,
    InvalidSettingsError,
    automation_settings,
    check_settings,
    configuration_table,
    resource_fields,
    settings_problems,
)
from user_pipeline.users.resources import RandomUserApi
from user_pipeline_tools.dagster_services import BIN_DIR, REPO_ROOT

BAD = {
    "USER_PIPELINE_USERS_PER_PARTITION": (
        "0",
        "USER_PIPELINE_USERS_PER_PARTITION=0: expected an integer from 1 to 1000000 (sets users_api.users_per_partition)",
    ),
    "USER_PIPELINE_API_URL": (
        "ftp://x",
        "USER_PIPELINE_API_URL='ftp://x': expected an http(s) URL such as https://randomuser.me/api/ (sets users_api.base_url)",
    ),
    "USER_PIPELINE_PAGE_SIZE": (
        "5001",
        "USER_PIPELINE_PAGE_SIZE=5001: expected an integer from 1 to 5000 (sets users_api.page_size)",
    ),
    "USER_PIPELINE_API_MAX_ATTEMPTS": (
        "many",
        "USER_PIPELINE_API_MAX_ATTEMPTS=many: expected an integer (sets users_api.max_attempts)",
    ),
    "USER_PIPELINE_WAREHOUSE_URL": (
        "mysql://bob:hunter2@db/users",
        "USER_PIPELINE_WAREHOUSE_URL='mysql://bob:***@db/users': expected a sqlite:///path or postgresql://user@host:port/database URL (sets warehouse.url)",
    ),
    "USER_PIPELINE_REGISTRY_START_DATE": (
        "2026-13-01",
        "USER_PIPELINE_REGISTRY_START_DATE='2026-13-01': expected a date YYYY-MM-DD (sets registry_settings.first_day)",
    ),
    "USER_PIPELINE_MAX_ROW_DROP_FRACTION": (
        "1.5",
        "USER_PIPELINE_MAX_ROW_DROP_FRACTION=1.5: expected a number from 0 to 1 (sets day_limits.max_row_drop_fraction)",
    ),
    "USER_PIPELINE_MAX_REJECTED_FRACTION": (
        "five percent",
        "USER_PIPELINE_MAX_REJECTED_FRACTION=five percent: expected a number (sets users_api.max_rejected_fraction)",
    ),
    "USER_PIPELINE_CONTRACT_VIOLATIONS": (
        "maybe",
        "USER_PIPELINE_CONTRACT_VIOLATIONS='maybe': expected 'fail' or 'quarantine' (sets users_api.contract_violations)",
    ),
    "USER_PIPELINE_CIRCUIT_COOLDOWN_SECONDS": (
        "-1",
        "USER_PIPELINE_CIRCUIT_COOLDOWN_SECONDS=-1: expected an integer from 0 to 86400 (sets users_api.circuit_cooldown_seconds)",
    ),
    "SPARK_MASTER": (
        "yarn",
        "SPARK_MASTER='yarn': expected local, local[N], local[*] or spark://host:port (sets spark.master)",
    ),
    "SPARK_EXECUTOR_CORES": (
        "0",
        "SPARK_EXECUTOR_CORES=0: expected an integer from 1 to 1024 (sets spark.executor_cores)",
    ),
    "SPARK_PACKAGES": (
        "org.apache.spark:spark-avro_2.13",
        "SPARK_PACKAGES='org.apache.spark:spark-avro_2.13': expected Maven coordinates groupId:artifactId:version, "
        "separated by commas, or nothing (sets spark.packages)",
    ),
    "SPARK_SHUFFLE_PARTITIONS": (
        "0",
        "SPARK_SHUFFLE_PARTITIONS=0: expected an integer from 1 to 100000 (sets spark.shuffle_partitions)",
    ),
    "USER_PIPELINE_SCHEDULE_TIMEZONE": (
        "Mars/Olympus",
        "USER_PIPELINE_SCHEDULE_TIMEZONE='Mars/Olympus': expected an IANA timezone such as UTC or Europe/Paris (sets the definitions' schedule_timezone)",
    ),
    "USER_PIPELINE_API_SENSOR_INTERVAL_SECONDS": (
        "0",
        "USER_PIPELINE_API_SENSOR_INTERVAL_SECONDS=0: expected an integer from 1 to 86400 (sets the definitions' api_sensor_interval_seconds)",
    ),
    "USER_PIPELINE_ALERT_WEBHOOK_URL": (
        "hooks.example.com",
        "USER_PIPELINE_ALERT_WEBHOOK_URL='hooks.example.com': expected an http(s) URL or nothing (sets alerts.webhook_url)",
    ),
}


@pytest.mark.parametrize("env_var", sorted(BAD))
def test_a_bad_value_is_named_by_its_environment_variable_in_one_line(env_var):
    value, message = BAD[env_var]
    assert settings_problems({env_var: value}) == [message]


def test_every_bad_setting_is_named_at_once_and_a_password_never_shown():
    with pytest.raises(InvalidSettingsError) as raised:
        check_settings({name: value for name, (value, _) in BAD.items()})
    assert str(raised.value) == "; ".join(
        message for setting in SETTINGS for name, (_, message) in BAD.items() if name == setting.env_var
    )
    assert "hunter2" not in str(raised.value)


def test_an_unset_variable_leaves_the_declared_default_and_a_set_one_binds_an_env_var(monkeypatch):
    assert settings_problems({}) == []
    assert resource_fields("users_api", {}) == {}
    assert RandomUserApi().users_per_partition == RandomUserApi.model_fields["users_per_partition"].default == 100
    bound = resource_fields(
        "users_api", {"USER_PIPELINE_USERS_PER_PARTITION": "7", "USER_PIPELINE_API_URL": "http://h/api/"}
    )
    assert bound["users_per_partition"].env_var_name == "USER_PIPELINE_USERS_PER_PARTITION"
    assert bound["base_url"].env_var_name == "USER_PIPELINE_API_URL"
    # Resolved the way a run resolves it: from the environment when the resource is set up.
    monkeypatch.setenv("USER_PIPELINE_USERS_PER_PARTITION", "7")
    with dg.build_resources({"users_api": resources()["users_api"]}) as built:
        assert built.users_api.users_per_partition == 7
    monkeypatch.delenv("USER_PIPELINE_USERS_PER_PARTITION")
    with dg.build_resources({"users_api": resources()["users_api"]}) as built:
        assert built.users_api.users_per_partition == 100


def test_every_setting_is_a_str_int_or_float_field_with_a_description():
    """dg.EnvVar binds str and int fields of resources (no enum config source: a choice is a checked
    str); the definition-time settings are read for their value, so any type their model validates."""
    for setting in SETTINGS:
        if setting.resource is not None:
            assert setting.info.annotation in (str, int, float), setting.env_var
        assert setting.info.description, setting.env_var
    assert len({setting.env_var for setting in SETTINGS}) == len(SETTINGS)


def test_a_float_field_takes_the_variables_number_when_valid_and_its_default_otherwise():
    """Dagster has no float config source: the definitions give the value; a bad one is the
    declared default there, and the run-start check names the variable."""
    assert resource_fields("day_limits", {"USER_PIPELINE_MAX_ROW_DROP_FRACTION": " 0.5 "}) == {
        "max_row_drop_fraction": 0.5
    }
    assert resource_fields("day_limits", {"USER_PIPELINE_MAX_ROW_DROP_FRACTION": "1.5"}) == {
        "max_row_drop_fraction": 0.2
    }
    assert settings_problems({"USER_PIPELINE_MAX_ROW_DROP_FRACTION": "1.5"}) == [
        BAD["USER_PIPELINE_MAX_ROW_DROP_FRACTION"][1]
    ]


def test_the_readme_configuration_table_is_the_one_generated_from_the_declarations():
    readme = (REPO_ROOT / "README.md").read_text()
    assert configuration_table() in readme, "run: .venv/bin/python -m user_pipeline.settings, and paste its table"
    section = readme[readme.index("## Configuration") :]
    section = section[: section.index("\n## ", 1)]
    documented = {line.split("`")[1] for line in section.splitlines() if line.startswith("| `")}
    assert documented - {"PGPASSWORD", "DAGSTER_HOME"} == {setting.env_var for setting in SETTINGS}


def test_the_definition_time_settings_come_from_the_environment_given_and_are_bounded():
    assert automation_settings({}) == AutomationSettings()
    assert automation_settings({"USER_PIPELINE_SCHEDULE_CRON": "15 2 * * *"}).schedule_cron == "15 2 * * *"
    with pytest.raises(InvalidSettingsError) as raised:
        automation_settings({"USER_PIPELINE_SCHEDULE_CRON": "every day", "USER_PIPELINE_FRESHNESS_DEADLINE_HOUR": "24"})
    assert str(raised.value) == (
        "USER_PIPELINE_SCHEDULE_CRON='every day': expected a cron expression of 5 fields, e.g. '0 1 * * *' "
        "(sets the definitions' schedule_cron); "
        "USER_PIPELINE_FRESHNESS_DEADLINE_HOUR=24: expected an integer from 0 to 23 (sets the definitions' freshness_deadline_hour)"
    )


@given(st.sampled_from(SETTINGS), st.text(max_size=12))
def test_any_text_in_any_setting_is_accepted_or_named_in_one_line(setting, text):
    problems = settings_problems({setting.env_var: text})
    assert problems == [] or (
        len(problems) == 1
        and problems[0].startswith(f"{setting.env_var}=")
        and f"(sets {setting.target})" in problems[0]
    )


def test_importing_the_pipeline_reads_no_setting_from_the_environment():
    """Every module of user_pipeline imported with a process environment that records each
    variable asked for: none of the settings' variables (or any other of ours) may be read."""
    script = textwrap.dedent(
        """
        import importlib, os, pkgutil, json
        asked = set()

        class Recording(type(os.environ)):
            def __getitem__(self, key):
                asked.add(key)
                return super().__getitem__(key)

            def __contains__(self, key):
                asked.add(key)
                return super().__contains__(key)

        os.environ.__class__ = Recording
        import user_pipeline
        for module in pkgutil.walk_packages(user_pipeline.__path__, "user_pipeline."):
            importlib.import_module(module.name)
        print(json.dumps(sorted(key for key in asked if key.startswith(("USER_PIPELINE_", "SPARK_")))))
        """
    )
    # Unset in the child: a library copying the whole environment at import (Dagster's vendored
    # croniter does) is not reading a setting, and a SparkContext of this process sets SPARK_* ones.
    env = {key: value for key, value in os.environ.items() if not key.startswith(("USER_PIPELINE_", "SPARK_"))}
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300, check=True
    )
    assert result.stdout.strip().splitlines()[-1] == "[]"


@pytest.mark.parametrize(
    "env_var", ["USER_PIPELINE_USERS_PER_PARTITION", "USER_PIPELINE_WAREHOUSE_URL", "USER_PIPELINE_API_URL"]
)
def test_a_run_with_a_bad_setting_fails_at_once_with_the_variable_as_its_failure_message(tmp_path, env_var):
    """Before: `invalid users_per_partition=0` (or the warehouse resource's set-up error) under a
    stack trace. A real `dagster asset materialize` process, the run recorded in a real instance."""
    home = tmp_path / "home"
    home.mkdir()
    value, expected = BAD[env_var]
    env = {
        **{key: val for key, val in os.environ.items() if not key.startswith("USER_PIPELINE_")},
        "DAGSTER_HOME": str(home),
        "USER_PIPELINE_DATA_DIR": str(tmp_path / "data"),
        "USER_PIPELINE_API_URL": "http://127.0.0.1:9/api/",
        env_var: value,
    }
    result = subprocess.run(
        [
            str(BIN_DIR / "dagster"),
            "asset",
            "materialize",
            "-m",
            "user_pipeline.definitions",
            "--select",
            "raw_users,normalized_users,users_table",
            "--partition",
            "2026-11-20",
        ],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode != 0
    assert f"InvalidSettingsError: {expected}" in result.stderr
    with dg.instance_for_test(temp_dir=str(home)) as instance:
        [record] = instance.get_run_records()
        [failure] = [
            entry.dagster_event
            for entry in instance.all_logs(record.dagster_run.run_id, of_type=dg.DagsterEventType.RUN_FAILURE)
        ]
        steps = instance.all_logs(record.dagster_run.run_id, of_type=dg.DagsterEventType.STEP_START)
    assert record.dagster_run.status == dg.DagsterRunStatus.FAILURE and not steps
    assert record.dagster_run.tags["dagster/max_retries"] == "0"  # the instance's run retries leave it
    assert failure.event_specific_data.error.message.strip().splitlines() == [
        f"user_pipeline.settings.InvalidSettingsError: {expected}"
    ]
    assert not (tmp_path / "data" / "raw_users").exists()


def test_the_row_drop_limit_is_the_day_limits_resource_bound_from_its_environment_variable():
    from user_pipeline.users.resources import DayLimits

    assert DayLimits(**resource_fields("day_limits", {})).max_row_drop_fraction == 0.2
    assert (
        DayLimits(
            **resource_fields("day_limits", {"USER_PIPELINE_MAX_ROW_DROP_FRACTION": " 0.5"})
        ).max_row_drop_fraction
        == 0.5
    )
    # Out of bounds: the definitions still load (the default), and every run fails naming the variable.
    assert resource_fields("day_limits", {"USER_PIPELINE_MAX_ROW_DROP_FRACTION": "1.5"}) == {
        "max_row_drop_fraction": 0.2
    }
    with pytest.raises(
        InvalidSettingsError, match="USER_PIPELINE_MAX_ROW_DROP_FRACTION=1.5: expected a number from 0 to 1"
    ):
        check_settings({"USER_PIPELINE_MAX_ROW_DROP_FRACTION": "1.5"})
