"""The benchmark's `--sections bare`: only the bare script's cases of issue #16, and the report's targets for them."""

import pytest

from benchmarks.run import BARE, BARE_BASELINE, Case, Result, parse_args, scaling_lines, target_lines


def test_bare_is_a_section_and_unknown_ones_are_refused():
    assert parse_args(["--sections", "bare", "--baseline", "06fc2e6"]).sections == {"bare"}
    with pytest.raises(SystemExit):
        parse_args(["--sections", "bare,nope"])


def test_the_bare_cases_give_the_halving_and_memory_targets():
    def case(section: str, partitions: int, users: int, new: float, old: float, rss: int) -> Case:
        made = Case(section, partitions, users, (BARE, BARE_BASELINE))
        made.results = {BARE: [Result(new, new, rss)], BARE_BASELINE: [Result(old, old, rss)]}
        return made

    cases = [
        case("main", 10, 5000, 4.0, 10.0, 200 * 2**20),
        case("scaling", 1, 10_000, 1.0, 2.0, 200 * 2**20),
        case("scaling", 1, 100_000, 6.0, 10.0, 320 * 2**20),
    ]
    lines = target_lines(cases)
    assert any(
        line.startswith("- bare work for 10 x 5,000: at most half of the baseline commit's: MET") for line in lines
    )
    assert any(
        line.startswith("- bare work for 1 x 100,000: at most half of the baseline commit's: MISSED") for line in lines
    )
    assert any("peak memory within 1.5x: MISSED (x1.60, 200 -> 320 MB)" in line for line in lines)
    assert scaling_lines(cases)[0].startswith("Growth from 10,000 to 100,000 users per partition")


def test_the_days_section_gives_the_worker_memory_target_after_its_warm_up():
    from benchmarks.run import API_RANGE, DAYS_MODES, days_lines

    def case(days: int, rss_mb: int) -> Case:
        made = Case("days", days, 2000, DAYS_MODES)
        made.results = {BARE: [Result(1.0, 1.0, 300 * 2**20)], API_RANGE: [Result(2.0, 2.0, rss_mb * 2**20)]}
        return made

    assert parse_args(["--sections", "days"]).sections == {"days"}
    grown = target_lines([case(4, 400), case(8, 500), case(31, 600)])
    assert any(
        "worker does not grow with the days" in line and "MISSED (x1.20, 500 -> 600 MB)" in line for line in grown
    )
    flat = target_lines([case(4, 400), case(8, 500), case(31, 520)])
    assert any("worker does not grow with the days" in line and "MET (x1.04" in line for line in flat)
    assert days_lines([case(4, 400), case(31, 520)])[2] == "| mode | 4 days | 31 days |"
