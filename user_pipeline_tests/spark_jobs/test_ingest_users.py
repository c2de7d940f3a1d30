"""Protects the PySpark ingestion job: exact Parquet output, idempotent dynamic overwrite, fail-before-write, and
plain spark-submit without anything of Dagster."""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from pyspark.sql.types import (
    DateType,
    DoubleType,
    IntegerType,
    LongType,
    StringType,
    TimestampType,
)

from spark_jobs import ingest_users
from spark_jobs.ingest_users import CorruptInputError, MissingInputError, run_ingestion
from user_pipeline.spark.submit import JOB_FILE, spark_home

from . import golden
from .support import (
    data_file_digest,
    data_files,
    partition_layout,
    read_agg,
    read_users,
    snapshot_tree,
)

DAY1, DAY2, DAY3 = golden.DAYS


def _ingest(spark, input_dir: Path, output_dir: Path, start: str, end: str) -> dict:
    return run_ingestion(spark, input_dir=str(input_dir), start_date=start, end_date=end, output_dir=str(output_dir))


def python_without_site_packages(directory: Path) -> Path:
    """This interpreter with `-S`: no site-packages, so neither dagster_pipes nor anything else installed; under
    spark-submit it still finds PySpark, on the PYTHONPATH spark-submit gives its driver and workers."""
    wrapper = directory / "python-without-site-packages"
    wrapper.write_text(f'#!/bin/sh\nexec "{sys.executable}" -S "$@"\n')
    wrapper.chmod(0o755)
    return wrapper


def plain_spark_submit(python: Path, *job_args: str) -> subprocess.CompletedProcess:
    """`spark-submit spark_jobs/ingest_users.py ...` as the README shows it, outside Dagster."""
    home = spark_home()
    env = {key: value for key, value in os.environ.items() if not key.startswith(("DAGSTER_", "PYTHONPATH"))}
    env.update(SPARK_HOME=home, PYSPARK_PYTHON=str(python), PYSPARK_DRIVER_PYTHON=str(python))
    command = [os.path.join(home, "bin", "spark-submit"), "--master", "local[2]", str(JOB_FILE), *job_args]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=600, check=False)


@pytest.fixture(scope="module")
def baseline(local_spark, tmp_path_factory):
    """Golden inputs for 3 days ingested once into a fresh output dir by plain spark-submit, with a Python that
    has PySpark and nothing of Dagster."""
    root = tmp_path_factory.mktemp("ingest_baseline")
    input_dir = golden.write_days(root / "in")
    output_dir = root / "out"
    python = python_without_site_packages(root)
    done = plain_spark_submit(
        python,
        *("--input-dir", str(input_dir), "--output-dir", str(output_dir)),
        *("--start-date", DAY1, "--end-date", DAY3, "--shuffle-partitions", "2"),
    )
    assert done.returncode == 0, done.stderr[-5000:]
    summary_lines = [line for line in done.stdout.splitlines() if line.startswith(ingest_users.SUMMARY_PREFIX)]
    return {
        "root": root,
        "input_dir": input_dir,
        "output_dir": output_dir,
        "python": python,
        "submitted": done,
        "summary_lines": summary_lines,
        "summary": json.loads(summary_lines[-1].removeprefix(ingest_users.SUMMARY_PREFIX)) if summary_lines else {},
        "users": read_users(local_spark, output_dir),
        "agg": read_agg(local_spark, output_dir),
    }


def test_plain_spark_submit_needs_nothing_of_dagster_and_prints_its_summary_and_log(baseline):
    no_pipes = subprocess.run(
        [str(baseline["python"]), "-c", "import dagster_pipes"], capture_output=True, text=True, check=False
    )
    assert "No module named 'dagster_pipes'" in no_pipes.stderr
    # One summary line, the last line of stdout, for the caller to parse.
    assert baseline["summary_lines"] == [baseline["submitted"].stdout.splitlines()[-1]]
    assert baseline["summary"]["users"]["rows"] == {DAY1: 3, DAY2: 3, DAY3: 4}
    # Its progress lines, on the driver's stderr, which spark-submit passes on to its stdout.
    progress = [line for line in baseline["submitted"].stdout.splitlines() if line.startswith("ingest_users: ")]
    app_id = baseline["summary"]["app_id"]
    out = baseline["output_dir"]
    assert progress == [
        f"ingest_users: Spark application {app_id} on local[2]",
        f"ingest_users: reading {DAY1} to {DAY3} from {baseline['input_dir']}",
        f'ingest_users: read 3 CSV file(s), 10 row(s): {{"{DAY1}": 3, "{DAY2}": 3, "{DAY3}": 4}}',
        f"ingest_users: wrote {out / 'users'} and {out / 'users_by_country_age_band'}",
    ]


def test_csv_contract_matches_job_schema():
    assert list(ingest_users.CSV_COLUMNS) == golden.CSV_COLUMNS
    assert ingest_users.CSV_SCHEMA["postcode"].dataType == StringType()
    assert ingest_users.CSV_SCHEMA["id_value"].dataType == StringType()


def test_golden_output_exact(local_spark, baseline):
    out = baseline["output_dir"]

    # Exact row content (timestamps rendered back to their ISO-8601 UTC form).
    assert baseline["users"] == golden.expected_user_rows()
    by_id = {r["user_id"]: r for r in baseline["users"]}
    persian = by_id["00000000-0000-4000-8000-202611030001"]
    assert (persian["first_name"], persian["city"]) == ("محمدرضا", "تهران")
    assert persian["id_name"] == "" and persian["id_value"] is None  # "" stays "", missing stays null
    assert by_id["00000000-0000-4000-8000-202611030002"]["postcode"] == "V0V 4U7"
    assert by_id["00000000-0000-4000-8000-202611030002"]["street_name"] == 'Rue "Principale", app. 4'
    assert by_id["00000000-0000-4000-8000-202611030003"]["postcode"] == "00123"
    assert by_id["00000000-0000-4000-8000-202611030003"]["street_name"] == "Line one\nLine two \\ back"
    assert by_id["00000000-0000-4000-8000-202611040002"]["city"] == "İstanbul"

    # Column types, as downstream readers see them.
    users_types = {f.name: f.dataType for f in local_spark.read.parquet(str(out / "users")).schema}
    assert list(users_types) == golden.CSV_COLUMNS[1:] + ["partition_date"]
    expected_types = {
        "partition_date": DateType(),
        "date_of_birth": TimestampType(),
        "registered_at": TimestampType(),
        "age": IntegerType(),
        "street_number": IntegerType(),
        "latitude": DoubleType(),
        "longitude": DoubleType(),
        "postcode": StringType(),
        "id_value": StringType(),
        "user_id": StringType(),
    }
    assert {k: users_types[k] for k in expected_types} == expected_types
    dob = (
        local_spark.read.parquet(str(out / "users"))
        .where("user_id = '00000000-0000-4000-8000-202611030001'")
        .selectExpr("unix_micros(date_of_birth) AS us")
        .first()["us"]
    )
    assert dob == int(dt.datetime(2009, 3, 2, 10, tzinfo=dt.UTC).timestamp() * 1_000_000)

    # Aggregate: exact content and types.
    assert baseline["agg"] == golden.EXPECTED_AGG
    agg_types = {f.name: f.dataType for f in local_spark.read.parquet(str(out / "users_by_country_age_band")).schema}
    assert agg_types == {
        "country": StringType(),
        "age_band": StringType(),
        "users": LongType(),
        "partition_date": DateType(),
    }

    # Layout: one data file (+ its Hadoop .crc) per day; dynamic overwrite leaves no
    # _SUCCESS marker and no .spark-staging-* / _temporary directory at the root.
    for dataset in ("users", "users_by_country_age_band"):
        layout = partition_layout(out / dataset)
        assert layout[""] == []
        assert sorted(layout) == ["", *(f"partition_date={d}" for d in golden.DAYS)]
        for day in golden.DAYS:
            (data,) = data_files(out / dataset, day)
            assert data.startswith("part-") and data.endswith(".snappy.parquet")
            assert layout[f"partition_date={day}"] == sorted([data, f".{data}.crc"])

    # Summary.
    summary = baseline["summary"]
    json.dumps(summary)  # JSON-serialisable for the spark-submit caller
    assert summary["partitions"] == golden.DAYS
    assert summary["master"] == "local[2]"
    # spark-submit's own application, not this process's session.
    assert summary["app_id"].startswith("local-") and summary["app_id"] != local_spark.sparkContext.applicationId
    assert summary["users"]["rows"] == {DAY1: 3, DAY2: 3, DAY3: 4}
    assert summary["users"]["total_rows"] == 10
    assert summary["users_by_country_age_band"]["rows"] == {DAY1: 3, DAY2: 3, DAY3: 3}
    for dataset in ("users", "users_by_country_age_band"):
        stats = summary[dataset]
        assert stats["files"] == 3
        assert stats["files_by_partition"] == dict.fromkeys(golden.DAYS, 1)
        on_disk = sum(
            (out / dataset / f"partition_date={d}" / f).stat().st_size
            for d in golden.DAYS
            for f in data_files(out / dataset, d)
        )
        assert stats["bytes"] == on_disk > 0


def test_reruns_are_idempotent_and_overwrite_only_their_days(local_spark, baseline, tmp_path):
    # The test session deliberately keeps Spark's default STATIC overwrite mode: dynamic
    # overwrite must come from the job's write option.
    assert local_spark.conf.get("spark.sql.sources.partitionOverwriteMode").upper() == "STATIC"
    input_dir = tmp_path / "in"
    shutil.copytree(baseline["input_dir"], input_dir)
    out = tmp_path / "out"
    _ingest(local_spark, input_dir, out, DAY1, DAY3)
    users_0, agg_0 = read_users(local_spark, out), read_agg(local_spark, out)
    assert users_0 == baseline["users"] and agg_0 == baseline["agg"]
    tree_0 = {ds: snapshot_tree(out / ds) for ds in ("users", "users_by_country_age_band")}
    digests_0 = {ds: data_file_digest(out / ds, DAY2) for ds in tree_0}

    def untouched(days):
        for ds, before in tree_0.items():
            after = snapshot_tree(out / ds)
            for day in days:
                prefix = f"partition_date={day}/"
                assert {k: v for k, v in after.items() if k.startswith(prefix)} == {
                    k: v for k, v in before.items() if k.startswith(prefix)
                }, f"{ds} {day} was rewritten"

    # Day 2 twice: same content, still one data file, days 1 and 3 byte-for-byte untouched
    # (same file names, sizes and mtimes).
    for _ in range(2):
        summary = _ingest(local_spark, input_dir, out, DAY2, DAY2)
        assert summary["partitions"] == [DAY2]
        assert summary["users"]["rows"] == {DAY2: 3}
        assert summary["users"]["files"] == summary["users_by_country_age_band"]["files"] == 1
        assert read_users(local_spark, out) == users_0
        assert read_agg(local_spark, out) == agg_0
        untouched([DAY1, DAY3])
        for ds in tree_0:
            assert len(data_files(out / ds, DAY2)) == 1
            assert partition_layout(out / ds)[""] == []
            # Deterministic output: a new file name, but byte-identical Parquet content.
            assert data_file_digest(out / ds, DAY2) == digests_0[ds]

    # The whole range again over already-written days: same rows, one file per day.
    _ingest(local_spark, input_dir, out, DAY1, DAY3)
    assert read_users(local_spark, out) == users_0
    assert read_agg(local_spark, out) == agg_0
    for ds in tree_0:
        assert partition_layout(out / ds)[""] == []
        for day in golden.DAYS:
            assert len(data_files(out / ds, day)) == 1
    tree_1 = {ds: snapshot_tree(out / ds) for ds in tree_0}

    # New content for day 2 replaces exactly that partition (overwrite, not append).
    new_day2 = golden.ROWS[DAY2][:1]
    golden.write_day(input_dir, DAY2, new_day2)
    summary = _ingest(local_spark, input_dir, out, DAY2, DAY2)
    assert summary["users"]["rows"] == {DAY2: 1}
    assert read_users(local_spark, out) == golden.expected_user_rows(rows_by_day={**golden.ROWS, DAY2: new_day2})
    assert read_agg(local_spark, out) == sorted(
        [r for r in golden.EXPECTED_AGG if r[0] != DAY2] + [(DAY2, "Ukraine", "30-44", 1)]
    )
    tree_0 = tree_1
    untouched([DAY1, DAY3])

    # A header-only CSV empties its day instead of keeping the previous rows.
    golden.write_day(input_dir, DAY2, [])
    summary = _ingest(local_spark, input_dir, out, DAY2, DAY2)
    assert summary["users"]["rows"] == summary["users_by_country_age_band"]["rows"] == {DAY2: 0}
    assert summary["users"]["files"] == summary["users_by_country_age_band"]["files"] == 0
    assert read_users(local_spark, out) == golden.expected_user_rows(days=[DAY1, DAY3])
    assert read_agg(local_spark, out) == [r for r in golden.EXPECTED_AGG if r[0] != DAY2]
    for ds in tree_0:
        layout = partition_layout(out / ds)
        assert sorted(layout) == ["", f"partition_date={DAY1}", f"partition_date={DAY3}"]
        assert layout[""] == []
    untouched([DAY1, DAY3])


def _corrupt_inputs(kind: str, src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    path = dst / f"{DAY2}.csv"
    text = path.read_text(encoding="utf-8")
    lines = text.splitlines(keepends=True)
    if kind == "non_numeric_age":
        assert '",45,"' in lines[2]
        lines[2] = lines[2].replace('",45,"', '",forty-five,"')
        path.write_text("".join(lines), encoding="utf-8")
    elif kind == "extra_column":
        lines[2] = lines[2].rstrip("\n") + ",surplus\n"
        path.write_text("".join(lines), encoding="utf-8")
    elif kind == "missing_column":
        lines[2] = lines[2].rsplit(",", 1)[0] + "\n"
        path.write_text("".join(lines), encoding="utf-8")
    elif kind == "wrong_header":
        lines[0] = lines[0].replace(",age,", ",user_age,")
        path.write_text("".join(lines), encoding="utf-8")
    elif kind == "partition_date_mismatch":
        rows = [dict(r, partition_date=DAY3) for r in golden.ROWS[DAY2]]
        golden.write_day(dst, DAY2, rows)
    elif kind == "bad_timestamp":
        rows = [dict(r) for r in golden.ROWS[DAY2]]
        rows[0]["registered_at"] = "yesterday"
        golden.write_day(dst, DAY2, rows)
    else:  # pragma: no cover
        raise ValueError(kind)
    return path


@pytest.mark.parametrize(
    "kind, reason_fragment",
    [
        ("non_numeric_age", "forty-five"),
        ("extra_column", "Malformed CSV record"),
        ("missing_column", "Malformed CSV record"),
        ("wrong_header", "Expected: age but found: user_age"),
        ("partition_date_mismatch", "partition_date"),
        ("bad_timestamp", "registered_at"),
    ],
)
def test_corrupt_day_fails_naming_file_and_keeps_output(local_spark, baseline, tmp_path, kind, reason_fragment):
    out = baseline["output_dir"]
    before = {ds: snapshot_tree(out / ds) for ds in ("users", "users_by_country_age_band")}
    bad = _corrupt_inputs(kind, baseline["input_dir"], tmp_path / "in")

    with pytest.raises(CorruptInputError) as excinfo:
        _ingest(local_spark, tmp_path / "in", out, DAY1, DAY3)

    message = str(excinfo.value)
    assert str(bad) in message
    assert excinfo.value.path == str(bad)
    assert reason_fragment in message
    # Nothing committed: every file identical (name, size, mtime), contents equal.
    assert {ds: snapshot_tree(out / ds) for ds in before} == before
    assert read_users(local_spark, out) == baseline["users"]
    assert read_agg(local_spark, out) == baseline["agg"]


def test_missing_day_fails_before_writing(local_spark, baseline, tmp_path):
    input_dir = tmp_path / "in"
    for day in (DAY1, DAY3):
        golden.write_day(input_dir, day)
    out = tmp_path / "out"

    with pytest.raises(MissingInputError) as excinfo:
        _ingest(local_spark, input_dir, out, DAY1, DAY3)

    missing = str(input_dir / f"{DAY2}.csv")
    assert missing in str(excinfo.value)
    assert excinfo.value.missing_paths == [missing]
    assert not out.exists()


def test_cli_rejects_reversed_range():
    assert ingest_users.main(["--input-dir", "x", "--output-dir", "y", "--start-date", DAY3, "--end-date", DAY1]) == 2


def _hostile_day(day: str):
    from user_pipeline_tests.hostile import hostile_frame

    frame = hostile_frame(day)
    # Timestamps are parsed (a bad one fails the run by design); every other text column is hostile.
    frame["date_of_birth"] = "1967-09-14T06:11:23.469Z"
    frame["registered_at"] = "2012-05-01T12:00:00.000Z"
    return frame


@pytest.mark.parametrize("folder", ["data dir [v1]", "glob {a,b} * ? chars", "back\\slash"])
def test_hostile_values_in_a_glob_like_folder_reach_parquet_exactly(local_spark, tmp_path, folder):
    """Finding 7 (paths are not patterns) and the Parquet leg of lossless values."""
    import pyarrow.parquet as pq

    from user_pipeline.users.csv_format import write_csv
    from user_pipeline.users.normalize import USER_COLUMNS

    frame = _hostile_day(DAY1)
    input_dir = tmp_path / folder / "normalized_users"
    input_dir.mkdir(parents=True)
    with (input_dir / f"{DAY1}.csv").open("wb") as handle:
        write_csv(handle, frame, USER_COLUMNS)
    # What the glob "data dir [v1]" would match instead: must never be read.
    decoy = tmp_path / "data dir v" / "normalized_users"
    decoy.mkdir(parents=True)
    golden.write_day(decoy, DAY1)

    summary = _ingest(local_spark, input_dir, tmp_path / folder / "parquet", DAY1, DAY1)

    assert summary["users"]["rows"] == {DAY1: len(frame)}
    stored = pq.read_table(tmp_path / folder / "parquet" / "users" / f"partition_date={DAY1}").to_pandas()
    stored = stored.sort_values("user_id").reset_index(drop=True)
    expected = frame.sort_values("user_id").reset_index(drop=True)
    for column, dtype in USER_COLUMNS.items():
        if dtype == "string" and column not in ("partition_date", "date_of_birth", "registered_at"):
            assert stored[column].tolist() == expected[column].tolist(), column
    assert (stored["id_name"] == "").sum() == 1  # "" stays "", distinct from null
    assert stored["age"].isna().tolist() == expected["age"].isna().tolist()
    assert stored["longitude"].tolist() == expected["longitude"].tolist()


def test_a_corrupt_file_in_a_glob_like_folder_is_named(local_spark, baseline, tmp_path):
    input_dir = tmp_path / "data dir [v1]"
    shutil.copytree(baseline["input_dir"], input_dir)
    bad = input_dir / f"{DAY2}.csv"
    bad.write_text(bad.read_text(encoding="utf-8").replace(",age,", ",user_age,"), encoding="utf-8")
    with pytest.raises(CorruptInputError) as excinfo:
        _ingest(local_spark, input_dir, tmp_path / "out", DAY1, DAY3)
    assert excinfo.value.path == str(bad)
    assert "Expected: age but found: user_age" in str(excinfo.value)
    assert not (tmp_path / "out").exists()
