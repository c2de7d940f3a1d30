"""Golden daily user CSVs (as upstream writes them) and the exact Parquet output expected."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pandas as pd

from user_pipeline.users.csv_format import write_csv
from user_pipeline.users.normalize import USER_COLUMNS

#: The upstream CSV contract, spelled out independently of spark_jobs.ingest_users.
CSV_COLUMNS = [
    "partition_date",
    "user_id",
    "email",
    "email_key",
    "username",
    "title",
    "first_name",
    "last_name",
    "gender",
    "date_of_birth",
    "age",
    "registered_at",
    "phone",
    "cell",
    "street_number",
    "street_name",
    "city",
    "state",
    "country",
    "postcode",
    "latitude",
    "longitude",
    "timezone_offset",
    "nationality",
    "id_name",
    "id_value",
    "password_salt",
    "password_sha256",
    "picture_url",
]

DAYS = ["2026-11-03", "2026-11-04", "2026-11-05"]


def _user(day: str, n: int, **fields) -> dict:
    row = {
        "partition_date": day,
        "user_id": f"00000000-0000-4000-8000-{day.replace('-', '')}{n:04d}",
        "email": f"user{n}@example.com",
        "email_key": f"user{n}@example.com",
        "username": f"user{n}",
        "title": "Mr",
        "first_name": "John",
        "last_name": "Doe",
        "gender": "male",
        "date_of_birth": "1967-09-14T06:11:23.469Z",
        "age": 59,
        "registered_at": "2012-05-01T12:00:00.000Z",
        "phone": "(555) 010-0000",
        "cell": "(555) 010-0001",
        "street_number": 100 + n,
        "street_name": "Main Street",
        "city": "Springfield",
        "state": "Oregon",
        "country": "United States",
        "postcode": "97477",
        "latitude": 44.0462,
        "longitude": -123.022,
        "timezone_offset": "-8:00",
        "nationality": "US",
        "id_name": "SSN",
        "id_value": f"123-45-{n:04d}",
        "password_salt": f"salt{n}",
        "password_sha256": f"{n:064x}",
        "picture_url": f"https://randomuser.me/api/portraits/men/{n}.jpg",
    }
    row.update(fields)
    return row


ROWS: dict[str, list[dict]] = {
    "2026-11-03": [
        _user(
            "2026-11-03",
            1,
            first_name="محمدرضا",
            last_name="کامروا",
            city="تهران",
            state="تهران",
            country="Iran",
            postcode="48687",
            nationality="IR",
            age=17,
            date_of_birth="2009-03-02T10:00:00.000Z",
            timezone_offset="+3:30",
            latitude=35.6892,
            longitude=51.389,
            id_name="",
            id_value=None,
        ),
        _user(
            "2026-11-03",
            2,
            title="Mrs",
            first_name="Chloé",
            last_name="Roy",
            gender="female",
            street_name='Rue "Principale", app. 4',
            city="Saint-Georges",
            state="Québec",
            country="Canada",
            postcode="V0V 4U7",
            nationality="CA",
            age=29,
            date_of_birth="1997-01-31T23:59:59.999Z",
            id_name="SIN",
            id_value="123 456 789",
        ),
        _user(
            "2026-11-03",
            3,
            first_name="Brad",
            last_name="O'Neil",
            street_name="Line one\nLine two \\ back",
            postcode="00123",
            age=30,
            date_of_birth="1996-06-15T00:00:00.000Z",
        ),
    ],
    "2026-11-04": [
        _user(
            "2026-11-04",
            1,
            first_name="Олександр",
            last_name="Шевченко",
            city="Харків",
            state="Харківська",
            country="Ukraine",
            postcode="04053",
            nationality="UA",
            age=44,
            timezone_offset="+2:00",
        ),
        _user(
            "2026-11-04",
            2,
            first_name="Çağan",
            last_name="Özbey",
            city="İstanbul",
            state="Şırnak",
            country="Turkey",
            postcode="81234",
            nationality="TR",
            age=45,
        ),
        _user(
            "2026-11-04",
            3,
            first_name="زهرا",
            last_name="رضایی",
            gender="female",
            country="Iran",
            city="شیراز",
            state="فارس",
            postcode="55512",
            nationality="IR",
            age=60,
        ),
    ],
    "2026-11-05": [
        _user(
            "2026-11-05",
            1,
            country="Canada",
            city="Toronto",
            state="Ontario",
            postcode="M5V 2T6",
            nationality="CA",
            age=18,
        ),
        _user(
            "2026-11-05",
            2,
            country="Canada",
            city="Halifax",
            state="Nova Scotia",
            postcode="B3H 1X1",
            nationality="CA",
            age=25,
        ),
        _user(
            "2026-11-05",
            3,
            country="Canada",
            city="Calgary",
            state="Alberta",
            postcode="T2P 1J9",
            nationality="CA",
            age=59,
        ),
        _user("2026-11-05", 4, country="Iran", city="تبریز", postcode="51368", nationality="IR", age=61),
    ],
}

#: Exact aggregate content: (partition_date, country, age_band, users).
EXPECTED_AGG = sorted(
    [
        ("2026-11-03", "Canada", "18-29", 1),
        ("2026-11-03", "Iran", "<18", 1),
        ("2026-11-03", "United States", "30-44", 1),
        ("2026-11-04", "Iran", "60+", 1),
        ("2026-11-04", "Turkey", "45-59", 1),
        ("2026-11-04", "Ukraine", "30-44", 1),
        ("2026-11-05", "Canada", "18-29", 2),
        ("2026-11-05", "Canada", "45-59", 1),
        ("2026-11-05", "Iran", "60+", 1),
    ]
)


def write_day(input_dir: Path, day: str, rows: list[dict] | None = None) -> Path:
    """Write one day exactly like the upstream asset: the pipeline's CSV format."""
    input_dir.mkdir(parents=True, exist_ok=True)
    path = input_dir / f"{day}.csv"
    frame = pd.DataFrame(ROWS[day] if rows is None else rows, columns=CSV_COLUMNS).astype(USER_COLUMNS)
    with path.open("wb") as handle:
        write_csv(handle, frame, USER_COLUMNS)
    return path


def write_days(input_dir: Path, days=DAYS) -> Path:
    for day in days:
        write_day(input_dir, day)
    return input_dir


def expected_user_rows(days=DAYS, rows_by_day: dict[str, list[dict]] | None = None) -> list[dict]:
    """Expected users rows as produced by ``read_users`` (timestamps as ISO strings)."""
    source = rows_by_day or ROWS
    out = []
    for day in days:
        for row in source[day]:
            expected = dict(row)
            expected["partition_date"] = dt.date.fromisoformat(day)
            out.append(expected)
    return sorted(out, key=lambda r: r["user_id"])
