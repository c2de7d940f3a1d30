"""Deterministic Random-User-Generator (API 1.4) compatible user generation.

User number ``k`` of a seed's stream is ``(page - 1) * results + i``. Each user
depends only on ``(seed, k, nationality filter)``: it gets its own
``random.Random`` seeded from a BLAKE2 hash of those values (never Python's
salted ``hash()``), so the output is byte-stable across processes and never
depends on the wall clock.

Value pools (names, cities, streets, phone/id/postcode shapes, ...) come from
``pools.json``, which ``build_pools.py`` derives from the recorded real API
responses in the shared fixtures.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import random
import string
import unicodedata
import uuid
from functools import lru_cache
from pathlib import Path
from typing import Any

from user_pipeline.users.api_client import NATIONALITIES as API_NATIONALITIES

POOLS_PATH = Path(__file__).with_name("pools.json")

# The nationalities the public API serves (randomuser.me/documentation#nationalities), as the
# pipeline's client declares them.
NATIONALITIES: tuple[str, ...] = tuple(sorted(API_NATIONALITIES))

# Top-level user fields, in the API's order.
USER_FIELDS: tuple[str, ...] = (
    "gender",
    "name",
    "location",
    "email",
    "login",
    "dob",
    "registered",
    "phone",
    "cell",
    "id",
    "picture",
    "nat",
)

# Ages are computed against this fixed date so output never depends on "now".
REFERENCE_DATE = _dt.date(2026, 11, 23)
_EPOCH = _dt.datetime(1970, 1, 1)

_ALNUM = string.ascii_letters + string.digits
_UPPER = string.ascii_uppercase
_PICTURE = "https://randomuser.me/api/portraits/"

# Letters NFKD does not decompose into ASCII.
_FOLD_EXTRA = {"ı": "i", "ø": "o", "æ": "ae", "ß": "ss", "đ": "d", "ł": "l", "œ": "oe", "þ": "th", "ð": "d"}
# Crude Persian consonant-skeleton transliteration (the style the real API's
# emails show, e.g. "تارا سالاری" -> "tr.slry"); only a fallback for names
# without a recorded email token.
_PERSIAN = {
    "آ": "a",
    "ب": "b",
    "پ": "p",
    "ت": "t",
    "ث": "s",
    "ج": "j",
    "چ": "ch",
    "ح": "h",
    "خ": "kh",
    "د": "d",
    "ذ": "z",
    "ر": "r",
    "ز": "z",
    "ژ": "zh",
    "س": "s",
    "ش": "sh",
    "ص": "s",
    "ض": "d",
    "ط": "t",
    "ظ": "z",
    "ع": "",
    "غ": "gh",
    "ف": "f",
    "ق": "gh",
    "ک": "k",
    "ك": "k",
    "گ": "g",
    "ل": "l",
    "م": "m",
    "ن": "n",
    "و": "v",
    "ه": "h",
    "ی": "y",
    "ي": "y",
    "ا": "",
    "ء": "",
    "ئ": "y",
}


def email_token(name: str) -> str:
    """ASCII email part for a name: lowercased, NFKD-folded, spaces and non-ASCII dropped."""
    s = "".join(_PERSIAN.get(c, _FOLD_EXTRA.get(c, c)) for c in name.lower())
    s = unicodedata.normalize("NFKD", s)
    s = "".join(c for c in s if c.isascii() and c.isprintable() and c not in " @")
    return s or "user"


def _compile_pattern(pattern: str) -> tuple:
    """'(###) @##-####' -> parts: literal str, ('d', n) digit run, ('a', n) A-Z run."""
    parts: list = []
    for ch in pattern:
        kind = "d" if ch == "#" else "a" if ch == "@" else None
        if kind and parts and isinstance(parts[-1], tuple) and parts[-1][0] == kind:
            parts[-1] = (kind, parts[-1][1] + 1)
        elif kind:
            parts.append((kind, 1))
        elif parts and isinstance(parts[-1], str):
            parts[-1] += ch
        else:
            parts.append(ch)
    return tuple(parts)


def _fill(rng: random.Random, parts: tuple) -> str:
    out = []
    for p in parts:
        if type(p) is str:
            out.append(p)
        elif p[0] == "d":
            out.append(str(rng.randrange(10 ** p[1])).zfill(p[1]))
        else:
            out.append("".join(rng.choices(_UPPER, k=p[1])))
    return "".join(out)


def _weighted(counts: dict[str, int], compile_: bool = True) -> list:
    """Expand {"value": count} into a list where each value appears count times."""
    out = []
    for value, n in sorted(counts.items()):
        out.extend([_compile_pattern(value) if compile_ else value] * n)
    return out


class _Nat:
    __slots__ = (
        "code",
        "country",
        "titles",
        "first",
        "last",
        "city",
        "state",
        "street",
        "phone",
        "cell",
        "id_name",
        "id_value",
        "pc_int",
        "pc_patterns",
    )

    def __init__(self, code: str, d: dict[str, Any]):
        tokens = d.get("email_tokens", {})

        def named(names: list[str]) -> list[tuple[str, str]]:
            return [(n, tokens.get(n) or email_token(n)) for n in names]

        self.code = code
        self.country = d["country"]
        self.titles = {g: _weighted(c, compile_=False) for g, c in d["titles"].items()}
        self.first = {g: named(v) for g, v in d["first"].items()}
        self.last = named(d["last"])
        self.city, self.state, self.street = d["city"], d["state"], d["street"]
        self.phone, self.cell = _weighted(d["phone"]), _weighted(d["cell"])
        self.id_name = d["id_name"]
        self.id_value = _weighted(d["id_value"]) if d["id_value"] else None
        pc = d["postcode"]
        self.pc_int = (pc["min"], pc["max"]) if pc["type"] == "int" else None
        self.pc_patterns = _weighted(pc["patterns"]) if pc["type"] == "str" else None


class _Pools:
    def __init__(self, data: dict[str, Any]):
        self.nats = {code: _Nat(code, d) for code, d in data["nationalities"].items()}
        self.timezones = [tuple(t) for t in data["timezones"]]
        self.passwords = data["passwords"]
        self.username_words = data["username_words"]
        self.username_number = tuple(data["username_number"])
        self.street_number = tuple(data["street_number"])
        self.dob_ms = tuple(data["dob_ms"])
        self.registered_ms = tuple(data["registered_ms"])


@lru_cache(maxsize=1)
def pools() -> _Pools:
    with POOLS_PATH.open(encoding="utf-8") as f:
        return _Pools(json.load(f))


def normalize_nationalities(nats: list[str] | None) -> tuple[str, ...]:
    """Upper-cased known codes in the given order, deduplicated; () means 'all'."""
    if not nats:
        return ()
    out: list[str] = []
    for n in nats:
        n = n.strip().upper()
        if n in NATIONALITIES and n not in out:
            out.append(n)
    return tuple(out)


def _date(rng: random.Random, lo_hi: tuple[int, int]) -> dict[str, Any]:
    ms = rng.randint(*lo_hi)
    d = _EPOCH + _dt.timedelta(milliseconds=ms)
    ref = REFERENCE_DATE
    age = ref.year - d.year - ((ref.month, ref.day) < (d.month, d.day))
    return {"date": f"{d:%Y-%m-%dT%H:%M:%S}.{ms % 1000:03d}Z", "age": age}


def _rng_for(seed: str, k: int, nat_key: str) -> random.Random:
    digest = hashlib.blake2b(f"{seed}\x1f{k}\x1f{nat_key}".encode(), digest_size=16).digest()
    return random.Random(int.from_bytes(digest, "big"))


def _filter(nationalities: list[str] | None) -> tuple[tuple[str, ...], str]:
    allowed = normalize_nationalities(nationalities) or NATIONALITIES
    return allowed, ("" if allowed == NATIONALITIES else ",".join(allowed))


def generate_user(seed: str, k: int, nationalities: list[str] | None = None) -> dict[str, Any]:
    """User number ``k`` (0-based) of ``seed``'s stream under a nationality filter."""
    return _make_user(seed, k, *_filter(nationalities))


def _make_user(seed: str, k: int, allowed: tuple[str, ...], nat_key: str) -> dict[str, Any]:
    p = pools()
    rng = _rng_for(seed, k, nat_key)

    nat = p.nats[rng.choice(allowed)]
    gender = "male" if rng.random() < 0.5 else "female"
    first, first_tok = rng.choice(nat.first[gender])
    last, last_tok = rng.choice(nat.last)
    if nat.pc_int:
        postcode: int | str = rng.randint(*nat.pc_int)
    else:
        postcode = _fill(rng, rng.choice(nat.pc_patterns))
    offset, tz_desc = rng.choice(p.timezones)
    password = rng.choice(p.passwords)
    salt = "".join(rng.choices(_ALNUM, k=8))
    salted = (password + salt).encode("utf-8")
    pic = f"{'men' if gender == 'male' else 'women'}/{rng.randrange(100)}.jpg"

    return {
        "gender": gender,
        "name": {"title": rng.choice(nat.titles[gender]), "first": first, "last": last},
        "location": {
            "street": {"number": rng.randint(*p.street_number), "name": rng.choice(nat.street)},
            "city": rng.choice(nat.city),
            "state": rng.choice(nat.state),
            "country": nat.country,
            "postcode": postcode,
            "coordinates": {
                "latitude": f"{rng.uniform(-90, 90):.4f}",
                "longitude": f"{rng.uniform(-180, 180):.4f}",
            },
            "timezone": {"offset": offset, "description": tz_desc},
        },
        "email": f"{first_tok}.{last_tok}@example.com",
        "login": {
            "uuid": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
            "username": f"{rng.choice(p.username_words)}{rng.randint(*p.username_number)}",
            "password": password,
            "salt": salt,
            "md5": hashlib.md5(salted).hexdigest(),
            "sha1": hashlib.sha1(salted).hexdigest(),
            "sha256": hashlib.sha256(salted).hexdigest(),
        },
        "dob": _date(rng, p.dob_ms),
        "registered": _date(rng, p.registered_ms),
        "phone": _fill(rng, rng.choice(nat.phone)),
        "cell": _fill(rng, rng.choice(nat.cell)),
        "id": {
            "name": nat.id_name,
            "value": _fill(rng, rng.choice(nat.id_value)) if nat.id_value else None,
        },
        "picture": {
            "large": _PICTURE + pic,
            "medium": _PICTURE + "med/" + pic,
            "thumbnail": _PICTURE + "thumb/" + pic,
        },
        "nat": nat.code,
    }


def generate_page(seed: str, page: int, results: int, nationalities: list[str] | None = None) -> list[dict[str, Any]]:
    """Users ``(page-1)*results .. page*results-1`` of ``seed``'s stream."""
    start = (page - 1) * results
    allowed, nat_key = _filter(nationalities)
    return [_make_user(seed, start + i, allowed, nat_key) for i in range(results)]


def select_fields(user: dict[str, Any], inc: list[str] | None, exc: list[str] | None) -> dict[str, Any]:
    """Apply the API's inc/exc (top-level fields; inc wins if both are given)."""
    if inc:
        keep = {f for f in inc if f in USER_FIELDS}
        if keep:
            return {k: v for k, v in user.items() if k in keep}
        return user
    if exc:
        drop = set(exc)
        return {k: v for k, v in user.items() if k not in drop}
    return user
