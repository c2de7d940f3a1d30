"""Every job, sensor and schedule, and every column of the users table, has a description in the UI."""

import dagster as dg

from user_pipeline.definitions import defs as load_definitions
from user_pipeline.users.normalize import USER_COLUMNS


def test_every_job_sensor_and_schedule_has_a_description():
    repository = load_definitions().get_repository_def()
    missing = [job.name for job in repository.get_all_jobs() if not job.name.startswith("__") and not job.description]
    missing += [sensor.name for sensor in repository.sensor_defs if not sensor.description]
    missing += [schedule.name for schedule in repository.schedule_defs if not schedule.description]
    assert not missing, f"no description: {missing}"


def test_every_column_of_the_users_table_has_a_description():
    spec = load_definitions().get_assets_def("users_table").specs_by_key[dg.AssetKey("users_table")]
    schema = spec.metadata.get("dagster/column_schema") if spec.metadata else None
    if schema is None:  # set on the materialization instead: read it from the asset module
        from user_pipeline.users.assets import _COLUMN_SCHEMA as schema
    columns = schema.schema.columns if hasattr(schema, "schema") else schema.columns
    assert [column.name for column in columns] == list(USER_COLUMNS)
    assert all(column.description for column in columns), [column.name for column in columns if not column.description]
