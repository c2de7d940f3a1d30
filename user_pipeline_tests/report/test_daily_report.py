"""The report's plain functions: age band edges, counting over chunks, the CSV table, a byte-stable chart."""

import io

import pandas as pd
from PIL import Image

from user_pipeline.report.daily_report import (
    DailyFigures,
    age_band,
    chart_countries,
    count_users,
    figures_table,
    render_chart,
    report_paths,
    write_report,
)
from user_pipeline.shared.atomic_files import temp_files_for

DAY = "2026-11-20"


def users(rows: list[tuple[str | None, int | None]]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "country": pd.array([c for c, _ in rows], dtype="string"),
            "age": pd.array([a for _, a in rows], dtype="Int64"),
        }
    )


def test_age_bands_include_their_lower_bound_and_exclude_their_upper_bound():
    ages = [0, 17, 18, 29, 30, 44, 45, 59, 60, 120, None]
    assert [age_band(age) for age in ages] == [
        "<18",
        "<18",
        "18-29",
        "18-29",
        "30-44",
        "30-44",
        "45-59",
        "45-59",
        "60+",
        "60+",
        "unknown",
    ]


def test_counts_add_up_over_chunks_sorted_by_users_then_name():
    chunks = [
        users([("Norway", 25), ("Brazil", 61), ("Norway", 17)]),
        users([("Brazil", 30), ("Algeria", 44), (None, 45), ("Norway", None)]),
    ]
    assert count_users(DAY, chunks) == DailyFigures(
        day=DAY,
        users=7,
        by_country=[("Norway", 3), ("Brazil", 2), ("Algeria", 1), ("unknown", 1)],
        by_age_band=[("<18", 1), ("18-29", 1), ("30-44", 2), ("45-59", 1), ("60+", 1), ("unknown", 1)],
    )


def test_every_age_band_is_listed_even_empty_and_unknown_only_when_an_age_is_missing():
    figures = count_users(DAY, [users([("Spain", 33)])])
    assert figures.by_age_band == [("<18", 0), ("18-29", 0), ("30-44", 1), ("45-59", 0), ("60+", 0)]


def test_the_table_lists_countries_then_age_bands():
    figures = count_users(DAY, [users([("Spain", 33), ("Chile", 70), ("Spain", 20)])])
    assert figures_table(figures).values.tolist() == [
        [DAY, "country", "Spain", 2],
        [DAY, "country", "Chile", 1],
        [DAY, "age_band", "<18", 0],
        [DAY, "age_band", "18-29", 1],
        [DAY, "age_band", "30-44", 1],
        [DAY, "age_band", "45-59", 0],
        [DAY, "age_band", "60+", 1],
    ]


def test_the_chart_folds_countries_beyond_its_limit_into_one_bar():
    counts = [(f"c{i:02}", 100 - i) for i in range(30)]
    assert chart_countries(counts, limit=30) == counts
    assert chart_countries(counts, limit=5) == [
        *counts[:4],
        ("other (26 countries)", sum(100 - i for i in range(4, 30))),
    ]


def test_the_chart_is_a_png_of_fixed_size_without_a_software_chunk_and_the_same_bytes_every_time():
    figures = count_users(DAY, [users([("Spain", 33), ("Chile", 70), ("Spain", 20)])])
    png = render_chart(figures)
    image = Image.open(io.BytesIO(png))
    assert (image.format, image.size) == ("PNG", (720, 360))
    assert "Software" not in image.info
    assert render_chart(figures) == png


def test_the_report_files_are_written_whole_beside_no_temporary_file(tmp_path):
    figures = count_users(DAY, [users([("Spain", 33), ('Zoe\rLand "x"', 20)])])
    paths = report_paths(tmp_path, DAY)
    assert (paths.png, paths.csv) == (tmp_path / "reports" / f"{DAY}.png", tmp_path / "reports" / f"{DAY}.csv")
    written = write_report(figures, paths)
    assert paths.png.read_bytes() == written.png
    assert paths.csv.read_bytes().decode("utf-8").split("\n") == [
        "partition_date,dimension,value,users",
        f'"{DAY}","country","Spain",1',
        f'"{DAY}","country","Zoe\rLand ""x""",1',
        f'"{DAY}","age_band","<18",0',
        f'"{DAY}","age_band","18-29",1',
        f'"{DAY}","age_band","30-44",1',
        f'"{DAY}","age_band","45-59",0',
        f'"{DAY}","age_band","60+",0',
        "",
    ]
    assert temp_files_for(paths.png) == temp_files_for(paths.csv) == []
