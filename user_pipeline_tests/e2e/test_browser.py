"""Acceptance in a real browser: a user materializes a day and backfills days by clicking in the UI.

Headless Debian Chromium (Playwright) on the real dagster-webserver + dagster-daemon of the
`dagster_services` fixture. From daily_users_job's asset graph, "Materialize all…" opens the
partitions dialog; typing a partition key launches one run, typing a range `[a...b]` launches a
backfill. The runs are then checked through GraphQL and the data on disk and in the warehouse.
Screenshots of every step are kept in test-artifacts/browser/ (a failing step adds a screenshot
and the page's HTML). Without Chromium the test skips, saying why; under CI=true it fails.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from datetime import date, timedelta

import dagster as dg
import pytest

from user_pipeline.partitions import daily_partitions
from user_pipeline.users.warehouse import open_warehouse
from user_pipeline_tests.browser import BrowserUnavailable, UiSession, chromium, clear_artifacts
from user_pipeline_tests.conftest import skip_or_fail
from user_pipeline_tools.dagster_services import TERMINAL_RUN_STATUSES

try:
    from playwright.sync_api import expect
except ImportError:  # the `browser` fixture skips (or fails under CI=true) and says why
    expect = None

JOB = "daily_users_job"
GROUP = "users"
JOB_ASSETS = ("raw_users", "normalized_users", "users_table")
TOAST_FADE_IN_MS = 600  # the "Launched run …" toast animates in: screenshot it once shown
RUN_TIMEOUT = 180  # seconds per wait (per day for the backfill); a run takes seconds to ~30s here

# Days well inside the dialog's default "Last 90 days" window, and clear of the latest day
# (the one schedules and sensors would pick, were they switched on).
_LAST = date.fromisoformat(daily_partitions.get_last_partition_key())
SINGLE_DAY = (_LAST - timedelta(days=12)).isoformat()
BACKFILL_DAYS = [(_LAST - timedelta(days=offset)).isoformat() for offset in (9, 8, 7)]

BACKFILL_QUERY = """
query Backfill($backfillId: String!) {
  partitionBackfillOrError(backfillId: $backfillId) {
    __typename
    ... on PartitionBackfill { id status numPartitions partitionNames }
    ... on PythonError { message }
    ... on BackfillNotFoundError { message }
  }
}
"""
BACKFILL_DONE = {"COMPLETED", "COMPLETED_SUCCESS", "COMPLETED_FAILED", "FAILED", "CANCELED", "CANCELING", "FAILING"}


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    """Headless Debian Chromium, or a skip (a failure under CI=true) saying why there is none.

    Requested before `dagster_services`, so a machine without Chromium starts no servers.
    """
    try:
        with chromium() as browser:
            clear_artifacts()
            yield browser
    except BrowserUnavailable as unavailable:
        skip_or_fail(str(unavailable))


@pytest.fixture
def ui(browser, dagster_services) -> Iterator[UiSession]:
    # Instance-level "seen" flag of the community modal: set it, so screenshots show the page.
    # (UiSession still dismisses the modal if it ever shows up.)
    dagster_services.graphql("mutation { setNuxSeen }")
    expect.set_options(timeout=30_000)  # the React UI loads in steps: be patient, within bounds
    session = UiSession(browser, dagster_services.url)
    yield session
    session.close()


def location_name(dagster_services) -> str:
    data = dagster_services.graphql("{ workspaceOrError { ... on Workspace { locationEntries { name } } } }")
    [entry] = data["workspaceOrError"]["locationEntries"]
    return entry["name"]


def open_partitions_dialog(ui: UiSession, job_path: str):
    """The job's asset graph, then "Materialize all…": the dialog to pick partitions of its 3 assets."""
    page = ui.page
    ui.goto(job_path)
    # The graph draws only the nodes in view (and may zoom in): the header counts the assets.
    expect(page.get_by_role("button", name=f"View {len(JOB_ASSETS)} assets")).to_be_visible()
    page.get_by_role("button", name=re.compile(r"\bMaterialize all")).click()
    dialog = page.get_by_role("dialog").filter(has_text="Partition selection")
    expect(dialog).to_be_visible()
    expect(dialog.get_by_text(f"Launch runs to materialize {len(JOB_ASSETS)} assets")).to_be_visible()
    return dialog


def select_partitions(dialog, text: str, count: int) -> None:
    """Types partition keys (a key, or a range `[a...b]`) into the dialog's partition selector."""
    selector = dialog.get_by_role("textbox")
    selector.fill(text)
    selector.press("Enter")
    expect(selector).to_have_value(text)
    expect(dialog.get_by_text(f"{count} partition{'s' if count != 1 else ''}", exact=True)).to_be_visible()


def run_partitions(run: dict) -> list[str]:
    """The days a run materializes: its partition, or its range (a multi-day backfill run)."""
    tags = run["tags"]
    if "dagster/partition" in tags:
        return [tags["dagster/partition"]]
    first, last = tags.get("dagster/asset_partition_range_start"), tags.get("dagster/asset_partition_range_end")
    if first and last:
        return daily_partitions.get_partition_keys_in_range(dg.PartitionKeyRange(first, last))
    return []


def wait_for_backfill(services, backfill_id: str, partitions: list[str], timeout: float) -> tuple[dict, list[dict]]:
    """Waits until the backfill's runs cover `partitions` and have all finished (or it ended).

    However the daemon splits the backfill (a run per day, or runs of day ranges under the assets'
    BackfillPolicy), returns the backfill and all its runs.
    """
    deadline = time.monotonic() + timeout
    while True:
        backfill = services.graphql(BACKFILL_QUERY, {"backfillId": backfill_id})["partitionBackfillOrError"]
        assert backfill["__typename"] == "PartitionBackfill", backfill
        runs = services.runs(tags=[{"key": "dagster/backfill", "value": backfill_id}])
        covered = {day for run in runs for day in run_partitions(run)}
        finished = all(run["status"] in TERMINAL_RUN_STATUSES for run in runs)
        if finished and (covered >= set(partitions) or backfill["status"] in BACKFILL_DONE):
            return backfill, runs
        if time.monotonic() > deadline:
            raise TimeoutError(
                f"waited {timeout}s for backfill {backfill_id} ({backfill['status']}) to run {partitions}; runs: "
                f"{[(run['runId'][:8], run_partitions(run), run['status']) for run in runs]}\n"
                f"--- daemon log ---\n{services.logs('daemon')}"
            )
        time.sleep(1)


def assert_day_landed(services, day: str) -> None:
    data_dir = services.data_dir
    raw = data_dir / "raw_users" / f"{day}.jsonl"
    assert raw.exists() and raw.stat().st_size > 0, f"no raw users file for {day}: {raw}"
    assert (data_dir / "normalized_users" / f"{day}.csv").exists(), f"no normalized users file for {day}"
    warehouse_url = getattr(services, "warehouse_url", f"sqlite:///{data_dir}/warehouse.sqlite")
    rows = open_warehouse(warehouse_url).count_rows(day)
    assert rows > 0, f"no warehouse rows for {day}"


def test_a_user_materializes_a_day_and_backfills_days_from_the_ui(browser, api_server, dagster_services, ui):
    api_server.start()
    page = ui.page
    location = location_name(dagster_services)
    job_path = f"/locations/{location}/jobs/{JOB}"

    with ui.failure_artifacts():
        # 1. The asset graph of the users group.
        ui.goto(f"/locations/{location}/asset-groups/{GROUP}")
        for asset in (*JOB_ASSETS, "user_registry"):
            expect(page.get_by_text(asset, exact=True).first).to_be_visible()
        ui.screenshot("asset-graph")

        # 2. One day: the job's 3 assets, one partition typed into the dialog, one run.
        dialog = open_partitions_dialog(ui, job_path)
        select_partitions(dialog, SINGLE_DAY, 1)
        launch = dialog.get_by_role("button", name="Launch 1 run", exact=True)
        expect(launch).to_be_enabled()
        ui.screenshot("dialog-one-partition")
        launch.click()
        toast = page.get_by_text(re.compile(r"Launched run [0-9a-f]{8}"))
        expect(toast).to_be_visible()
        page.wait_for_timeout(TOAST_FADE_IN_MS)
        ui.screenshot("launched-one-run")
        run_prefix = re.search(r"Launched run ([0-9a-f]{8})", toast.inner_text()).group(1)
        expect(dialog).to_be_hidden()

        # 3. A small backfill, launched at once: its runs may start beside the first one.
        dialog = open_partitions_dialog(ui, job_path)
        select_partitions(dialog, f"[{BACKFILL_DAYS[0]}...{BACKFILL_DAYS[-1]}]", len(BACKFILL_DAYS))
        launch = dialog.get_by_role("button", name="Launch backfill", exact=True)
        expect(launch).to_be_enabled()
        ui.screenshot("dialog-backfill")
        launch.click()
        toast = page.get_by_text(re.compile(r"Created backfill \w+"))
        expect(toast).to_be_visible()
        page.wait_for_timeout(TOAST_FADE_IN_MS)
        ui.screenshot("launched-backfill")
        backfill_id = re.search(r"Created backfill (\w+)", toast.inner_text()).group(1)
        expect(dialog).to_be_hidden()

        ui.goto("/runs")
        expect(page.get_by_role("link", name=backfill_id)).to_be_visible()
        expect(page.get_by_role("link", name=run_prefix)).to_be_visible()
        ui.screenshot("runs-page-launched")

        # The single day: one run, from the UI, SUCCESS, and its data in files and warehouse.
        [run] = dagster_services.wait_for_runs(
            1, timeout=RUN_TIMEOUT, tags=[{"key": "dagster/partition", "value": SINGLE_DAY}]
        )
        assert run["runId"].startswith(run_prefix), (run, run_prefix)
        assert run["jobName"] == JOB and run["tags"].get("dagster/from_ui") == "true", run
        assert run["status"] == "SUCCESS", f"{run}\n{dagster_services.logs('daemon')}"
        assert_day_landed(dagster_services, SINGLE_DAY)

        # The backfill: exactly the days typed, its runs (per day or per range) all SUCCESS,
        # each day run once, and every day's data landed.
        backfill, runs = wait_for_backfill(
            dagster_services, backfill_id, BACKFILL_DAYS, RUN_TIMEOUT * len(BACKFILL_DAYS)
        )
        assert sorted(backfill["partitionNames"]) == BACKFILL_DAYS, backfill
        summary = [(run["runId"][:8], run_partitions(run), run["status"]) for run in runs]
        assert runs and all(run["status"] == "SUCCESS" for run in runs), f"{summary}\n{dagster_services.logs('daemon')}"
        assert sorted(day for run in runs for day in run_partitions(run)) == BACKFILL_DAYS, summary
        assert {run["jobName"] for run in runs} == {JOB}, summary
        assert backfill["status"] in {"REQUESTED", "COMPLETED", "COMPLETED_SUCCESS"}, backfill
        for day in BACKFILL_DAYS:
            assert_day_landed(dagster_services, day)

        # 4. What the user sees once done: the runs page, and the backfill's runs all Success.
        ui.goto("/runs")
        expect(page.get_by_role("link", name=backfill_id)).to_be_visible()
        ui.screenshot("runs-page-done")
        ui.goto(f"/runs/b/{backfill_id}?tab=runs")
        expect(page.get_by_text("Success", exact=True)).to_have_count(len(runs))
        ui.screenshot("backfill-runs-done")
