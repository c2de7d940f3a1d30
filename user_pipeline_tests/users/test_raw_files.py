"""raw_users files: users that break the contract never replace a good file, and quarantine leaves
them out into a rejects file that never holds a plaintext password."""

import json

import pytest

from user_pipeline.users.api_client import UsersApiClient
from user_pipeline.users.contract import ContractViolation
from user_pipeline.users.raw_files import write_raw_users

SEED = "2026-11-20"


def pages(base_url: str, users: int, page_size: int):
    client = UsersApiClient(base_url=base_url, page_size=page_size)
    return client.iter_pages(seed=SEED, users=users)


@pytest.fixture
def good_file(tmp_path):
    path = tmp_path / "raw.jsonl"
    path.write_text('{"previous": "good"}\n', encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("alteration", "field", "shown"),
    [
        ({"set": {"location.street": "Parliament St"}}, "location.street", "'Parliament St'"),
        ({"set": {"login.uuid": None}}, "login.uuid", "None"),
        ({"set": {"name.last": "Null\u0000Byte"}}, "name.last", "'Null\\x00Byte'"),
        ({"unset": ["email"]}, "email", "nothing"),
        ({"unset": ["login"]}, "login", "nothing"),
        ({"set": {"location.postcode": 1.5}}, "location.postcode", "1.5"),
    ],
)
def test_a_violation_fails_naming_seed_page_user_field_and_value_and_keeps_the_file(
    users_api_server, good_file, alteration, field, shown
):
    users_api_server.add_fault("alter_users", seeds=[SEED], users=[7], **alteration)
    with pytest.raises(ContractViolation) as raised:
        write_raw_users(pages(users_api_server.base_url, 10, 5), good_file)
    assert f"seed '{SEED}' page 2 results[2] (user 7 of the seed): {field}: " in str(raised.value)
    assert str(raised.value).endswith(f"(got {shown})")
    assert good_file.read_text(encoding="utf-8") == '{"previous": "good"}\n'
    assert [p.name for p in good_file.parent.iterdir()] == [good_file.name], "no temporary file left"


def test_quarantine_leaves_violating_users_out_into_the_rejects_file(users_api_server, tmp_path):
    users_api_server.add_fault(
        "alter_users", seeds=[SEED], users=[1, 8], set={"location.street": "Parliament St", "login.password": "hunter2"}
    )
    raw, rejects = tmp_path / "raw.jsonl", tmp_path / "rejects.jsonl"
    summary = write_raw_users(pages(users_api_server.base_url, 10, 5), raw, rejects_path=rejects)
    assert (summary.received, summary.users, summary.rejected) == (10, 8, 2)
    assert summary.rejected_by_field == {"location.street": 2}
    assert len(raw.read_text(encoding="utf-8").splitlines()) == 8
    records = [json.loads(line) for line in rejects.read_text(encoding="utf-8").splitlines()]
    assert [(r["page"], r["index"], r["user_number"]) for r in records] == [(1, 1, 1), (2, 3, 8)]
    assert records[0]["violations"] == [
        {"field": "location.street", "reason": "Input should be a valid dictionary", "value": "'Parliament St'"}
    ]
    assert records[0]["user"]["location"]["street"] == "Parliament St"
    assert "password" not in records[0]["user"]["login"]
    assert "hunter2" not in rejects.read_text(encoding="utf-8") + raw.read_text(encoding="utf-8")


def test_quarantine_with_nothing_to_reject_writes_an_empty_rejects_file(users_api_server, tmp_path):
    raw, rejects = tmp_path / "raw.jsonl", tmp_path / "rejects.jsonl"
    summary = write_raw_users(pages(users_api_server.base_url, 10, 10), raw, rejects_path=rejects)
    assert (summary.users, summary.rejected, summary.rejected_fraction) == (10, 0, 0.0)
    assert rejects.read_text(encoding="utf-8") == ""


def test_the_plaintext_password_leaves_the_users_handed_on_and_the_raw_file(users_api_server, tmp_path):
    # Removed in place, once per user: what on_users sees is what the file holds, password-free.
    fetched = list(pages(users_api_server.base_url, 6, 3))
    assert all("password" in user["login"] for page in fetched for user in page.users)
    seen = []
    write_raw_users(fetched, tmp_path / "raw.jsonl", on_users=seen.extend)
    lines = [json.loads(line) for line in (tmp_path / "raw.jsonl").read_text(encoding="utf-8").splitlines()]
    assert lines == seen and len(lines) == 6
    assert not [user for user in seen if "password" in user["login"]]
    assert {"uuid", "username", "salt", "sha256"} <= set(seen[0]["login"])
