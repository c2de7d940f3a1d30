"""Regenerate ``pools.json`` from recorded real randomuser.me API responses.

    python -m user_pipeline_tools.randomuser_server.build_pools /work/shared/fixtures/randomuser

Every value the generator draws (names, cities, states, streets, titles,
passwords, username words, time zones) is a value seen in those recordings.
Phone, cell, id and string-postcode values become shapes: for each group of
values with the same layout, a character that is identical in every sample
(and there are at least 4 samples) stays literal, other digits become ``#``
and other capital letters ``@``. Integer postcodes, street numbers, username
numbers and dob/registered timestamps become the observed [min, max] ranges.

First and last names are pooled across nationalities that share a language
(NAME_GROUPS): a couple of thousand recorded users show only part of each real
name list, and per-nationality pools alone would make first.last emails repeat
about three times as often as the real API does (41 repeats per 5000 users).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import re
import sys
from collections import Counter, defaultdict
from pathlib import Path

from .generator import POOLS_PATH, email_token

_MIN_SAMPLES_FOR_LITERALS = 4
NAME_GROUPS = (("AU", "CA", "GB", "IE", "NZ", "US"), ("CH", "FR"), ("ES", "MX"), ("DK", "NO"))


def _shape_key(s: str) -> str:
    return re.sub(r"[A-Z]", "@", re.sub(r"[0-9]", "#", s))


def _shapes(values: list[str]) -> dict[str, int]:
    groups: dict[str, list[str]] = defaultdict(list)
    for v in values:
        groups[_shape_key(v)].append(v)
    out: Counter = Counter()
    for key, samples in groups.items():
        chars = []
        for i, ch in enumerate(key):
            column = {s[i] for s in samples}
            if ch in "#@" and (len(column) > 1 or len(samples) < _MIN_SAMPLES_FOR_LITERALS):
                chars.append(ch)
            else:
                chars.append(samples[0][i])
        out["".join(chars)] += len(samples)
    return dict(sorted(out.items()))


def _ms(iso: str) -> int:
    d = dt.datetime.fromisoformat(iso.replace("Z", "+00:00"))
    return int(d.timestamp() * 1000)


def build(fixture_dir: Path) -> dict:
    users = []
    for path in sorted(fixture_dir.glob("*.json")):
        body = json.loads(path.read_text(encoding="utf-8"))
        users.extend(u for u in body.get("results", []) if "gender" in u and "nat" in u)
    # The same seed recorded with results=1/3/100 repeats users; keep each once.
    unique = {u["login"]["uuid"]: u for u in users}
    users = list(unique.values())

    by_nat: dict[str, list[dict]] = defaultdict(list)
    for u in users:
        by_nat[u["nat"]].append(u)

    name_users = dict(by_nat.items())
    for group in NAME_GROUPS:
        pooled = [u for nat in group for u in by_nat.get(nat, [])]
        name_users.update(dict.fromkeys(group, pooled))

    nationalities = {}
    for nat, us in sorted(by_nat.items()):
        tokens: dict[str, str] = {}
        for u in name_users[nat]:
            local = u["email"].split("@")[0].split(".")
            if len(local) != 2:
                continue
            for name, tok in zip((u["name"]["first"], u["name"]["last"]), local, strict=True):
                if email_token(name) != tok:
                    tokens.setdefault(name, tok)
        postcodes = [u["location"]["postcode"] for u in us]
        if all(isinstance(p, int) for p in postcodes):
            postcode = {"type": "int", "min": min(postcodes), "max": max(postcodes)}
        else:
            postcode = {"type": "str", "patterns": _shapes([str(p) for p in postcodes])}
        ids = [u["id"]["value"] for u in us if u["id"]["value"] is not None]
        nationalities[nat] = {
            "country": Counter(u["location"]["country"] for u in us).most_common(1)[0][0],
            "titles": {
                g: dict(sorted(Counter(u["name"]["title"] for u in us if u["gender"] == g).items()))
                for g in ("male", "female")
            },
            "first": {
                g: sorted({u["name"]["first"] for u in name_users[nat] if u["gender"] == g}) for g in ("male", "female")
            },
            "last": sorted({u["name"]["last"] for u in name_users[nat]}),
            "city": sorted({u["location"]["city"] for u in us}),
            "state": sorted({u["location"]["state"] for u in us}),
            "street": sorted({u["location"]["street"]["name"] for u in us}),
            "phone": _shapes([u["phone"] for u in us]),
            "cell": _shapes([u["cell"] for u in us]),
            "id_name": Counter(u["id"]["name"] for u in us).most_common(1)[0][0],
            "id_value": _shapes(ids) if ids else None,
            "postcode": postcode,
            "email_tokens": dict(sorted(tokens.items())),
        }

    usernames = [re.fullmatch(r"(\D+)(\d+)", u["login"]["username"]) for u in users]
    numbers = [int(m.group(2)) for m in usernames if m]
    return {
        "_provenance": (
            "Derived by user_pipeline_tools/randomuser_server/build_pools.py from recorded real "
            "randomuser.me API 1.4 responses (shared fixtures). Do not edit by hand."
        ),
        "timezones": sorted(
            {(u["location"]["timezone"]["offset"], u["location"]["timezone"]["description"]) for u in users}
        ),
        "passwords": sorted({u["login"]["password"] for u in users}),
        "username_words": sorted({m.group(1) for m in usernames if m}),
        "username_number": [min(numbers), max(numbers)],
        "street_number": [
            min(u["location"]["street"]["number"] for u in users),
            max(u["location"]["street"]["number"] for u in users),
        ],
        "dob_ms": [min(_ms(u["dob"]["date"]) for u in users), max(_ms(u["dob"]["date"]) for u in users)],
        "registered_ms": [
            min(_ms(u["registered"]["date"]) for u in users),
            max(_ms(u["registered"]["date"]) for u in users),
        ],
        "nationalities": nationalities,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("fixture_dir", type=Path, help="directory of recorded API responses (*.json)")
    parser.add_argument("--output", type=Path, default=POOLS_PATH)
    args = parser.parse_args(argv)
    data = build(args.fixture_dir)
    args.output.write_text(json.dumps(data, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {args.output} ({args.output.stat().st_size} bytes, {len(data['nationalities'])} nationalities)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
