"""One day's users report: users per country and per age band, as a PNG chart and a CSV table.

Plain pandas and matplotlib, no Dagster. The normalized CSV is read in chunks, so memory stays
flat however many users a day holds. Both files are replaced atomically, and a re-run of a day
writes the same bytes: the chart is drawn with fixed size, resolution and style, and without
the PNG's `Software` text chunk (which names the matplotlib version).
"""

from __future__ import annotations

import base64
import io
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from user_pipeline.shared.atomic_files import atomic_write
from user_pipeline.users.csv_format import write_csv
from user_pipeline.users.normalize import read_normalized_csv

# (label, lowest age included, first age excluded); the same bands as the Spark aggregate.
AGE_BANDS: tuple[tuple[str, int | None, int | None], ...] = (
    ("<18", None, 18),
    ("18-29", 18, 30),
    ("30-44", 30, 45),
    ("45-59", 45, 60),
    ("60+", 60, None),
)
UNKNOWN = "unknown"
READ_CHUNK_ROWS = 50_000
TABLE_COLUMNS = ["partition_date", "dimension", "value", "users"]
TABLE_DTYPES = {"partition_date": "string", "dimension": "string", "value": "string", "users": "Int64"}

# More countries than this are drawn as one "other (N countries)" bar; the CSV keeps them all.
CHART_COUNTRIES = 25
# 720 x 360 pixels: readable in the UI's metadata panel, and a PNG of a few tens of KB.
FIGURE_SIZE_INCHES = (9.0, 4.5)
DPI = 80


@dataclass(frozen=True)
class ReportPaths:
    png: Path
    csv: Path


@dataclass(frozen=True)
class DailyFigures:
    day: str
    users: int
    # (country, users), most users first, ties by name.
    by_country: list[tuple[str, int]]
    # (band, users) in AGE_BANDS order, every band even when empty; `unknown` only when an age is missing.
    by_age_band: list[tuple[str, int]]


@dataclass(frozen=True)
class WrittenReport:
    figures: DailyFigures
    paths: ReportPaths
    png: bytes


def report_paths(data_dir: str | Path, day: str) -> ReportPaths:
    folder = Path(data_dir) / "reports"
    return ReportPaths(png=folder / f"{day}.png", csv=folder / f"{day}.csv")


def age_band(age: int | None) -> str:
    if age is None or pd.isna(age):
        return UNKNOWN
    for label, low, high in AGE_BANDS:
        if (low is None or age >= low) and (high is None or age < high):
            return label
    raise AssertionError(f"no band for age {age}")  # the bands cover every integer


def count_users(day: str, chunks: Iterable[pd.DataFrame]) -> DailyFigures:
    """Counts users per country and per age band over chunks of normalized users."""
    countries: Counter[str] = Counter()
    bands: Counter[str] = Counter()
    for chunk in chunks:
        countries.update(chunk["country"].fillna(UNKNOWN))
        bands.update(age_band(age) for age in chunk["age"].astype("object"))
    by_age_band = [(label, bands[label]) for label, _, _ in AGE_BANDS]
    if bands[UNKNOWN]:
        by_age_band.append((UNKNOWN, bands[UNKNOWN]))
    return DailyFigures(
        day=day,
        users=sum(countries.values()),
        by_country=sorted(countries.items(), key=lambda item: (-item[1], item[0])),
        by_age_band=by_age_band,
    )


def read_figures(day: str, normalized_csv: Path) -> DailyFigures:
    return count_users(day, read_normalized_csv(normalized_csv, chunk_rows=READ_CHUNK_ROWS))


def figures_table(figures: DailyFigures) -> pd.DataFrame:
    """The figures as rows of TABLE_COLUMNS: the countries, then the age bands."""
    rows = [(figures.day, "country", country, users) for country, users in figures.by_country]
    rows += [(figures.day, "age_band", band, users) for band, users in figures.by_age_band]
    return pd.DataFrame(rows, columns=TABLE_COLUMNS)


def render_chart(figures: DailyFigures) -> bytes:
    """The two-panel bar chart as PNG bytes, identical for identical figures."""
    # Imported here, not at module level: every process that loads the definitions would pay for it.
    from matplotlib import style
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    # Matplotlib's own defaults, not the machine's matplotlibrc, so every host draws the same chart.
    with style.context("default"):
        figure = Figure(figsize=FIGURE_SIZE_INCHES, dpi=DPI, layout="constrained")
        FigureCanvasAgg(figure)
        by_country, by_band = figure.subplots(1, 2, width_ratios=[3, 2])

        # Largest on top: barh draws the first bar at the bottom.
        countries = chart_countries(figures.by_country)[::-1]
        bars = by_country.barh([name for name, _ in countries], [users for _, users in countries], color="#4c72b0")
        by_country.bar_label(bars, padding=2, fontsize=8)
        by_country.set_title("Users by country")
        by_country.set_xlabel("users")
        by_country.tick_params(axis="y", labelsize=8)
        by_country.margins(x=0.12)

        bars = by_band.bar(
            [band for band, _ in figures.by_age_band], [users for _, users in figures.by_age_band], color="#dd8452"
        )
        by_band.bar_label(bars, padding=2, fontsize=8)
        by_band.set_title("Users by age band")
        by_band.set_xlabel("age")
        by_band.set_ylabel("users")
        by_band.margins(y=0.12)

        figure.suptitle(f"Users on {figures.day}: {figures.users:,} in total")
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png", dpi=DPI, metadata={"Software": None})
    return buffer.getvalue()


def chart_countries(by_country: list[tuple[str, int]], limit: int = CHART_COUNTRIES) -> list[tuple[str, int]]:
    if len(by_country) <= limit:
        return by_country
    rest = by_country[limit - 1 :]
    return [*by_country[: limit - 1], (f"other ({len(rest)} countries)", sum(users for _, users in rest))]


def write_report(figures: DailyFigures, paths: ReportPaths) -> WrittenReport:
    """Writes the CSV table and the PNG chart, each replaced atomically."""
    # The pipeline's CSV format: a country name holding a CR or a quote stays one field.
    with atomic_write(paths.csv) as handle:
        write_csv(handle, figures_table(figures), TABLE_DTYPES)
    png = render_chart(figures)
    with atomic_write(paths.png) as handle:
        handle.write(png)
    return WrittenReport(figures=figures, paths=paths, png=png)


def png_markdown(alt_text: str, png: bytes) -> str:
    """A markdown image holding the PNG itself, as a base64 data URI."""
    return f"![{alt_text}](data:image/png;base64,{base64.b64encode(png).decode('ascii')})"
