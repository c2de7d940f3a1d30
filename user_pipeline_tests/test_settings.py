"""Setting errors name the environment variable the operator set, its value and its bounds, in
one line, as the run's failure message, before any work and without retries."""

import os
import re
import subprocess
import sys

import dagster as dg
import pytest
from hypothesis import given
from hypothesis import strategies as st

from user_pipeline.settings import SETTINGS, InvalidSettingsError, check_settings, resource_fields, settings_problems
from user_pipeline_tests.dagster_services import BIN_DIR, REPO_ROOT

BAD = {
    "USER_PIPELINE_USERS_PER_PARTITION": ("0", "USER_PIPELINE_USERS_PER_PARTITION=0: expected an integer from 1 to 1000000 (sets users_api.users_per_partition)"),
    "USER_PIPELINE_API_URL": ("ftp://x", "USER_PIPELINE_API_URL='ftp://x': expected an http(s) URL such as https://randomuser.me/api/ (sets users_api.base_url)"),
    "USER_PIPELINE_PAGE_SIZE": ("5001", "USER_PIPELINE_PAGE_SIZE=5001: expected an integer from 1 to 5000 (the API's limit) (sets users_api.page_size)"),
    "USER_PIPELINE_API_MAX_ATTEMPTS": ("many", "USER_PIPELINE_API_MAX_ATTEMPTS=many: expected an integer (sets users_api.max_attempts)"),
    "USER_PIPELINE_WAREHOUSE_URL": ("mysql://bob:hunter2@db/users", "USER_PIPELINE_WAREHOUSE_URL='mysql://bob:***@db/users': expected a sqlite:///path or postgresql://user@host:port/database URL (sets warehouse.url)"),
    "USER_PIPELINE_REGISTRY_START_DATE": ("2026-13-01", "USER_PIPELINE_REGISTRY_START_DATE='2026-13-01': expected a date YYYY-MM-DD (sets registry_settings.first_day)"),
    "USER_PIPELINE_MAX_ROW_DROP_FRACTION": ("1.5", "USER_PIPELINE_MAX_ROW_DROP_FRACTION=1.5: expected a number from 0 to 1 (sets day_limits.max_row_drop_fraction)"),
    "USER_PIPELINE_ALERT_WEBHOOK_URL": ("hooks.example.com", "USER_PIPELINE_ALERT_WEBHOOK_URL='hooks.example.com': expected an http(s) URL or nothing (sets alerts.webhook_url)"),
}


@pytest.mark.parametrize("env_var", sorted(BAD))
def test_a_bad_value_is_named_by_its_environment_variable_in_one_line(env_var):
    value, message = BAD[env_var]
    assert settings_problems({env_var: value}) == [message]


def test_every_bad_setting_is_named_at_once_and_a_password_never_shown():
    with pytest.raises(InvalidSettingsError) as raised:
        check_settings({name: value for name, (value, _) in BAD.items()})
    assert str(raised.value) == "; ".join(message for setting in SETTINGS for name, (_, message) in BAD.items() if name == setting.env_var)
    assert "hunter2" not in str(raised.value)


def test_defaults_and_unset_variables_are_valid():
    assert settings_problems({}) == []
    assert resource_fields("users_api", {})["users_per_partition"] == 100


def test_every_setting_is_in_the_readme_configuration_table_once():
    readme = (REPO_ROOT / "README.md").read_text()
    table = readme[readme.index("## Configuration"):]
    for setting in SETTINGS:
        short = "_" + setting.env_var.rsplit("_", 2)[-2] + "_" + setting.env_var.rsplit("_", 1)[-1]
        assert f"`{setting.env_var}`" in table or short in table, setting.env_var
    assert len({setting.env_var for setting in SETTINGS}) == len(SETTINGS)


@given(st.sampled_from([s for s in SETTINGS if s.parse is int]), st.text(max_size=12))
def test_any_text_in_an_integer_setting_is_accepted_or_named(setting, text):
    problems = settings_problems({setting.env_var: text})
    assert problems == [] or (len(problems) == 1 and problems[0].startswith(f"{setting.env_var}=") and "expected" in problems[0])


@pytest.mark.parametrize("env_var", ["USER_PIPELINE_USERS_PER_PARTITION", "USER_PIPELINE_WAREHOUSE_URL", "USER_PIPELINE_API_URL"])
def test_a_run_with_a_bad_setting_fails_at_once_with_the_variable_as_its_failure_message(tmp_path, env_var):
    """Before: `invalid users_per_partition=0` (or the warehouse resource's set-up error) under a
    stack trace. A real `dagster asset materialize` process, the run recorded in a real instance."""
    home = tmp_path / "home"
    home.mkdir()
    value, expected = BAD[env_var]
    env = {
        **{key: val for key, val in os.environ.items() if not key.startswith("USER_PIPELINE_")},
        "DAGSTER_HOME": str(home), "USER_PIPELINE_DATA_DIR": str(tmp_path / "data"),
        "USER_PIPELINE_API_URL": "http://127.0.0.1:9/api/", env_var: value,
    }
    result = subprocess.run(
        [str(BIN_DIR / "dagster"), "asset", "materialize", "-m", "user_pipeline.definitions",
         "--select", "raw_users,normalized_users,users_table", "--partition", "2026-11-20"],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode != 0
    assert f"InvalidSettingsError: {expected}" in result.stderr
    with dg.instance_for_test(temp_dir=str(home)) as instance:
        [record] = instance.get_run_records()
        [failure] = [entry.dagster_event for entry in instance.all_logs(record.dagster_run.run_id, of_type=dg.DagsterEventType.RUN_FAILURE)]
        steps = instance.all_logs(record.dagster_run.run_id, of_type=dg.DagsterEventType.STEP_START)
    assert record.dagster_run.status == dg.DagsterRunStatus.FAILURE and not steps
    assert record.dagster_run.tags["dagster/max_retries"] == "0"  # the instance's run retries leave it
    assert failure.event_specific_data.error.message.strip().splitlines() == [f"user_pipeline.settings.InvalidSettingsError: {expected}"]
    assert not (tmp_path / "data" / "raw_users").exists()


def test_the_row_drop_limit_is_the_day_limits_resource_bound_from_its_environment_variable():
    from user_pipeline.users.resources import DayLimits

    assert resource_fields("day_limits", {}) == {"max_row_drop_fraction": 0.2}
    assert DayLimits(**resource_fields("day_limits", {"USER_PIPELINE_MAX_ROW_DROP_FRACTION": " 0.5"})).max_row_drop_fraction == 0.5
    # Out of bounds: the definitions still load (the default), and every run fails naming the variable.
    assert resource_fields("day_limits", {"USER_PIPELINE_MAX_ROW_DROP_FRACTION": "1.5"}) == {"max_row_drop_fraction": 0.2}
    with pytest.raises(InvalidSettingsError, match="USER_PIPELINE_MAX_ROW_DROP_FRACTION=1.5: expected a number from 0 to 1"):
        check_settings({"USER_PIPELINE_MAX_ROW_DROP_FRACTION": "1.5"})
