"""daily_users_report on real users from the bundled API server: the chart, its figures, its metadata, re-runs."""

import base64
import csv
import io
from collections import Counter

import dagster as dg
from PIL import Image

from user_pipeline.report.assets import daily_users_report
from user_pipeline.users.assets import daily_users
from user_pipeline_tests.runs import users_resources

DAY = "2026-11-20"
DAYS = ["2026-11-18", "2026-11-19", "2026-11-20"]
USERS = 200
DATA_URI_PREFIX = f"![users {DAY}](data:image/png;base64,"


def materialize(base_url: str, data_dir, partition_key: str | None = None, tags: dict | None = None, assets=None):
    return dg.materialize(
        assets or [daily_users, daily_users_report],
        selection=None if assets else ["raw_users", "normalized_users", "daily_users_report"],
        partition_key=partition_key,
        tags=tags,
        resources=users_resources(base_url, data_dir, users_per_partition=USERS),
        raise_on_error=False,
    )


def report_events(result: dg.ExecuteInProcessResult) -> dict[str, dict]:
    return {
        event.partition: {key: value.value for key, value in event.metadata.items()}
        for event in result.asset_materializations_for_node("daily_users_report")
    }


def band(age: int) -> str:
    if age < 18:
        return "<18"
    if age < 30:
        return "18-29"
    if age < 45:
        return "30-44"
    if age < 60:
        return "45-59"
    return "60+"


def expected_rows(normalized_csv) -> list[list[str]]:
    """The report's table recounted straight from the normalized CSV, with the csv module only."""
    with open(normalized_csv, encoding="utf-8", newline="") as handle:
        users = list(csv.DictReader(handle))
    countries = Counter(user["country"] for user in users)
    bands = Counter(band(int(user["age"])) for user in users)
    return [
        *(
            [DAY, "country", country, str(n)]
            for country, n in sorted(countries.items(), key=lambda item: (-item[1], item[0]))
        ),
        *([DAY, "age_band", label, str(bands[label])] for label in ["<18", "18-29", "30-44", "45-59", "60+"]),
    ]


def normalized_rows(data_dir, day: str) -> int:
    with open(data_dir / "normalized_users" / f"{day}.csv", encoding="utf-8", newline="") as handle:
        return sum(1 for _ in csv.DictReader(handle))


def read_rows(report_csv) -> list[list[str]]:
    with open(report_csv, encoding="utf-8", newline="") as handle:
        header, *rows = csv.reader(handle)
    assert header == ["partition_date", "dimension", "value", "users"]
    return rows


def test_a_day_gives_a_png_chart_shown_in_the_ui_and_its_figures_recounted_exactly(users_api_server, tmp_path):
    result = materialize(users_api_server.base_url, tmp_path, DAY)
    assert result.success
    metadata = report_events(result)[DAY]
    png_path, csv_path = tmp_path / "reports" / f"{DAY}.png", tmp_path / "reports" / f"{DAY}.csv"

    assert metadata["path"] == str(png_path)
    assert metadata["csv_path"] == str(csv_path)
    image = Image.open(png_path)
    assert (image.format, image.size) == ("PNG", (720, 360))
    png = png_path.read_bytes()
    assert metadata["png_bytes"] == len(png) < 100_000
    assert metadata["chart"].startswith(DATA_URI_PREFIX) and metadata["chart"].endswith(")")
    assert base64.b64decode(metadata["chart"][len(DATA_URI_PREFIX) : -1]) == png
    assert Image.open(io.BytesIO(png)).format == "PNG"

    rows = expected_rows(tmp_path / "normalized_users" / f"{DAY}.csv")
    assert read_rows(csv_path) == rows
    country_rows = [(value, int(n)) for _, dimension, value, n in rows if dimension == "country"]
    band_rows = [(value, int(n)) for _, dimension, value, n in rows if dimension == "age_band"]
    assert metadata["dagster/row_count"] == sum(n for _, n in country_rows) == sum(n for _, n in band_rows)
    assert metadata["countries"] == len(country_rows)
    assert [(r.data["country"], r.data["users"]) for r in metadata["top_countries"].records] == country_rows[:10]
    assert [(r.data["age_band"], r.data["users"]) for r in metadata["age_bands"].records] == band_rows


def test_a_rerun_writes_the_same_csv_and_png_bytes(users_api_server, tmp_path):
    assert materialize(users_api_server.base_url, tmp_path, DAY).success
    png_path, csv_path = tmp_path / "reports" / f"{DAY}.png", tmp_path / "reports" / f"{DAY}.csv"
    first_png, first_csv = png_path.read_bytes(), csv_path.read_bytes()
    assert materialize(users_api_server.base_url, tmp_path, DAY).success
    assert (png_path.read_bytes(), csv_path.read_bytes()) == (first_png, first_csv)
    assert sorted(path.name for path in (tmp_path / "reports").iterdir()) == [f"{DAY}.csv", f"{DAY}.png"]


def test_a_multi_day_run_writes_every_day_and_lists_them_without_embedding_a_chart(users_api_server, tmp_path):
    result = materialize(
        users_api_server.base_url,
        tmp_path,
        tags={"dagster/asset_partition_range_start": DAYS[0], "dagster/asset_partition_range_end": DAYS[-1]},
    )
    assert result.success
    events = report_events(result)
    assert sorted(events) == DAYS
    metadata = events[DAYS[0]]
    assert "chart" not in metadata
    days = metadata["days"]
    assert sorted(days) == DAYS
    for day in DAYS:
        assert days[day]["path"] == str(tmp_path / "reports" / f"{day}.png")
        assert days[day]["dagster/row_count"] == normalized_rows(tmp_path, day)
        assert Image.open(tmp_path / "reports" / f"{day}.png").format == "PNG"
    assert metadata["dagster/row_count"] == sum(normalized_rows(tmp_path, day) for day in DAYS)


def test_a_day_without_normalized_users_fails_naming_the_missing_file(users_api_server, tmp_path):
    result = materialize(users_api_server.base_url, tmp_path, DAY, assets=[daily_users_report])
    assert not result.success
    [failure] = result.get_step_failure_events()
    missing = tmp_path / "normalized_users" / f"{DAY}.csv"
    assert (
        f"normalized_users {DAY} is not materialized ({missing} is missing)" in failure.step_failure_data.error.message
    )
    assert not (tmp_path / "reports").exists()


def test_the_asset_description_comes_from_the_docstring():
    assert daily_users_report.descriptions_by_key[dg.AssetKey("daily_users_report")].startswith(
        "The day's users at a glance"
    )
