"""Trigger runs through the Dagster webserver's GraphQL API: no Dagster import, only `requests`.

For machines that can reach the webserver (http://HOST:3000) but have no Dagster install or
workspace: a cron host, a CI job, another scheduler. The webserver queues the runs; the daemon
launches them under the instance's limits, exactly like a launch from the UI.

    python -m user_pipeline.graphql_triggers --url http://127.0.0.1:3000 \\
        launch-run --job daily_users_job --partition 2026-11-20
    python -m user_pipeline.graphql_triggers --url http://127.0.0.1:3000 \\
        launch-run --job daily_users_job --from 2026-11-01 --to 2026-11-05
    python -m user_pipeline.graphql_triggers --url http://127.0.0.1:3000 \\
        backfill --job daily_users_job --from 2026-11-01 --to 2026-11-05
    python -m user_pipeline.graphql_triggers --url http://127.0.0.1:3000 \\
        reexecute --run-id RUN_ID --from-failure

Each command prints the new run id (launch-run, reexecute) or backfill id (backfill) on stdout
and exits 0; on any failure it prints the GraphQL error message on stderr and exits 1. The
code location and repository holding the job are discovered through `repositoriesOrError`,
and the job's partition set through the repository's `partitionSets`; nothing is hard-coded.

`launch-run --from/--to` queues ONE run over the range (`launchRun` with the
`dagster/asset_partition_range_start`/`_end` tags), as the UI's "Launch as... Single run" does:
the daemon starts it at its next dequeue (every second, `run_coordinator` in dagster.yaml).
A backfill is a backfill daemon's business, and Dagster 1.13's backfill daemon looks for new
backfills every 30 s (a fixed interval): use a range run when the days should start now.

Backfills use `launchPartitionBackfill` over the job's partition set (a job backfill), not an
asset-selection backfill: every run is a run of the named job, with the job's own tags (so
failure alerts, run filters and the UI name the job, and `user_registry_job`'s
`user_pipeline/sequential` tag keeps its days in date order), and re-execution from failure
works for them. It is also what `dagster job backfill` does.

GraphQL reference: dagster_graphql's schema (mutations launchRun, launchPartitionBackfill,
launchRunReexecution; inputs ExecutionParams, LaunchBackfillParams, ReexecutionParams).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import dataclass
from typing import Any

import requests

DEFAULT_URL = "http://127.0.0.1:3000"
PARTITION_TAG = "dagster/partition"
# Dagster's tags for one run over a partition range (what the UI's single-run launch sets).
RANGE_START_TAG = "dagster/asset_partition_range_start"
RANGE_END_TAG = "dagster/asset_partition_range_end"
TIMEOUT_SECONDS = 60

# Fields every error member of the result unions answers with; members without `message`
# (InvalidStepError, InvalidOutputError, RunConfigValidationInvalid) are asked for what they have.
_ERROR_FIELDS = """
    __typename
    ... on Error { message }
    ... on InvalidStepError { invalidStepKey }
    ... on InvalidOutputError { stepKey invalidOutputName }
    ... on RunConfigValidationInvalid { errors { message } }
"""

REPOSITORIES_QUERY = """
query Repositories {
  repositoriesOrError {
    __typename
    ... on RepositoryConnection {
      nodes { name location { name } jobs { name } partitionSets { name pipelineName } }
    }
    ... on Error { message }
  }
}
"""

PARTITIONS_QUERY = """
query Partitions($repositorySelector: RepositorySelector!, $partitionSetName: String!) {
  partitionSetOrError(repositorySelector: $repositorySelector, partitionSetName: $partitionSetName) {
    __typename
    ... on PartitionSet {
      partitionsOrError { __typename ... on Partitions { results { name } } ... on Error { message } }
    }
    ... on Error { message }
  }
}
"""

LAUNCH_RUN_MUTATION = f"""
mutation LaunchRun($executionParams: ExecutionParams!) {{
  launchRun(executionParams: $executionParams) {{
    ... on LaunchRunSuccess {{ run {{ runId }} }}
    {_ERROR_FIELDS}
  }}
}}
"""

LAUNCH_BACKFILL_MUTATION = f"""
mutation LaunchBackfill($backfillParams: LaunchBackfillParams!) {{
  launchPartitionBackfill(backfillParams: $backfillParams) {{
    ... on LaunchBackfillSuccess {{ backfillId }}
    {_ERROR_FIELDS}
  }}
}}
"""

REEXECUTE_MUTATION = f"""
mutation Reexecute($reexecutionParams: ReexecutionParams!) {{
  launchRunReexecution(reexecutionParams: $reexecutionParams) {{
    ... on LaunchRunSuccess {{ run {{ runId }} }}
    {_ERROR_FIELDS}
  }}
}}
"""


class TriggerError(Exception):
    """A failure to report: the webserver's or GraphQL's own message."""


@dataclass(frozen=True)
class JobLocation:
    """Where a job lives: the selector fields every GraphQL launch needs."""

    location_name: str
    repository_name: str
    job_name: str
    partition_set_name: str | None

    @property
    def repository_selector(self) -> dict[str, str]:
        return {"repositoryLocationName": self.location_name, "repositoryName": self.repository_name}

    @property
    def job_selector(self) -> dict[str, str]:
        return {**self.repository_selector, "jobName": self.job_name}


def webserver_url() -> str:
    """$DAGSTER_WEBSERVER_URL, read when called, or DEFAULT_URL."""
    return os.environ.get("DAGSTER_WEBSERVER_URL") or DEFAULT_URL


class DagsterGraphQL:
    """A minimal client for the webserver's /graphql endpoint (`url` None: `webserver_url()`)."""

    def __init__(self, url: str | None = None, timeout: float = TIMEOUT_SECONDS):
        self.endpoint = (url or webserver_url()).rstrip("/") + "/graphql"
        self.timeout = timeout

    def execute(self, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
        try:
            response = requests.post(
                self.endpoint, json={"query": query, "variables": variables or {}}, timeout=self.timeout
            )
        except requests.RequestException as error:
            raise TriggerError(f"cannot reach the Dagster webserver at {self.endpoint}: {error}") from None
        try:
            body = response.json()
        except ValueError:
            raise TriggerError(f"{self.endpoint} answered HTTP {response.status_code}: {response.text[:500]}") from None
        if body.get("errors"):
            raise TriggerError(
                "GraphQL error: " + "; ".join(error.get("message", str(error)) for error in body["errors"])
            )
        # A mutation answering a PythonError comes with HTTP 500 but a normal `data` body: the
        # caller reports its typed error and message.
        if not body.get("data"):
            raise TriggerError(f"{self.endpoint} answered HTTP {response.status_code}: {response.text[:500]}")
        return body["data"]

    def find_job(self, job_name: str) -> JobLocation:
        """The code location and repository defining `job_name`, and its partition set if any."""
        result = self.execute(REPOSITORIES_QUERY)["repositoriesOrError"]
        if result["__typename"] != "RepositoryConnection":
            raise TriggerError(error_message(result))
        matches = [
            JobLocation(
                location_name=repository["location"]["name"],
                repository_name=repository["name"],
                job_name=job_name,
                partition_set_name=next(
                    (ps["name"] for ps in repository["partitionSets"] if ps["pipelineName"] == job_name), None
                ),
            )
            for repository in result["nodes"]
            if any(job["name"] == job_name for job in repository["jobs"])
        ]
        if not matches:
            known = sorted(
                {
                    job["name"]
                    for repository in result["nodes"]
                    for job in repository["jobs"]
                    if not job["name"].startswith("__")
                }
            )
            raise TriggerError(f"no job named {job_name!r} in the workspace; jobs: {', '.join(known) or 'none'}")
        if len(matches) > 1:
            where = ", ".join(f"{m.repository_name}@{m.location_name}" for m in matches)
            raise TriggerError(f"job {job_name!r} is defined in several repositories ({where})")
        return matches[0]

    def partition_names(self, job: JobLocation) -> list[str]:
        if job.partition_set_name is None:
            raise TriggerError(f"job {job.job_name!r} is not partitioned")
        result = self.execute(
            PARTITIONS_QUERY,
            {"repositorySelector": job.repository_selector, "partitionSetName": job.partition_set_name},
        )["partitionSetOrError"]
        if result["__typename"] != "PartitionSet":
            raise TriggerError(error_message(result))
        partitions = result["partitionsOrError"]
        if partitions["__typename"] != "Partitions":
            raise TriggerError(error_message(partitions))
        return [partition["name"] for partition in partitions["results"]]

    @staticmethod
    def _check_partitions(job: JobLocation, keys: list[str], names: list[str]) -> None:
        missing = [key for key in dict.fromkeys(keys) if key not in names]
        if missing:
            raise TriggerError(
                f"no partition {', '.join(map(repr, missing))} in job {job.job_name!r} "
                f"(partitions: {names[0] if names else '-'} .. {names[-1] if names else '-'})"
            )

    def launch_run(
        self,
        job_name: str,
        partition: str | None = None,
        tags: dict[str, str] | None = None,
        run_config: dict[str, Any] | None = None,
        partition_range: tuple[str, str] | None = None,
    ) -> str:
        """Queues one run of the job: for one partition (its `dagster/partition` tag), or for the
        partitions `partition_range` = (first, last), both included, as one run (the range tags);
        returns its id."""
        job = self.find_job(job_name)
        all_tags = dict(tags or {})
        if partition is not None and partition_range is not None:
            raise TriggerError("give --partition or --from/--to, not both")
        if partition is not None or partition_range is not None:
            if job.partition_set_name is None:
                raise TriggerError(f"job {job_name!r} is not partitioned; drop --partition/--from/--to")
            # The webserver queues a run for any tag value; an unknown day would only fail in the run.
            names = self.partition_names(job)
            if partition is not None:
                self._check_partitions(job, [partition], names)
                all_tags[PARTITION_TAG] = partition
            else:
                first, last = partition_range
                self._check_partitions(job, [first, last], names)
                if names.index(first) > names.index(last):
                    raise TriggerError(f"--from {first} is after --to {last}")
                all_tags[RANGE_START_TAG], all_tags[RANGE_END_TAG] = first, last
        params: dict[str, Any] = {
            "selector": job.job_selector,
            "executionMetadata": {"tags": _tag_list(all_tags)},
        }
        if run_config is not None:
            params["runConfigData"] = run_config
        result = self.execute(LAUNCH_RUN_MUTATION, {"executionParams": params})["launchRun"]
        if result["__typename"] != "LaunchRunSuccess":
            raise TriggerError(error_message(result))
        return result["run"]["runId"]

    def launch_backfill(
        self,
        job_name: str,
        first: str,
        last: str,
        tags: dict[str, str] | None = None,
        run_config: dict[str, Any] | None = None,
    ) -> str:
        """A backfill of the job's partitions from `first` to `last`, both included; returns its id."""
        job = self.find_job(job_name)
        names = self.partition_names(job)
        self._check_partitions(job, [first, last], names)
        start, end = names.index(first), names.index(last)
        if start > end:
            raise TriggerError(f"--from {first} is after --to {last}")
        params: dict[str, Any] = {
            "selector": {"partitionSetName": job.partition_set_name, "repositorySelector": job.repository_selector},
            "partitionNames": names[start : end + 1],
            "tags": _tag_list(tags or {}),
        }
        if run_config is not None:
            params["runConfigData"] = run_config
        return self.launch_backfill_params(params)

    def launch_backfill_params(self, params: dict[str, Any]) -> str:
        """launchPartitionBackfill with these LaunchBackfillParams (a job's partition set, or an
        asset backfill by `assetSelection` + `partitionNames` or `partitionsByAssets`); returns its id."""
        result = self.execute(LAUNCH_BACKFILL_MUTATION, {"backfillParams": params})["launchPartitionBackfill"]
        if result["__typename"] != "LaunchBackfillSuccess":
            raise TriggerError(error_message(result))
        return result["backfillId"]

    def reexecute(self, run_id: str, strategy: str = "FROM_FAILURE") -> str:
        """Re-executes a finished run (FROM_FAILURE: only its failed and not-run steps); returns the new run id."""
        result = self.execute(REEXECUTE_MUTATION, {"reexecutionParams": {"parentRunId": run_id, "strategy": strategy}})[
            "launchRunReexecution"
        ]
        if result["__typename"] != "LaunchRunSuccess":
            raise TriggerError(error_message(result))
        return result["run"]["runId"]


def _tag_list(tags: dict[str, str]) -> list[dict[str, str]]:
    return [{"key": key, "value": value} for key, value in tags.items()]


def error_message(result: dict[str, Any]) -> str:
    kind = result.get("__typename", "error")
    if result.get("message"):
        return f"{kind}: {result['message'].strip()}"
    if "invalidStepKey" in result:
        return f"{kind}: no step {result['invalidStepKey']!r}"
    if "invalidOutputName" in result:
        return f"{kind}: step {result['stepKey']!r} has no output {result['invalidOutputName']!r}"
    if result.get("errors"):
        return f"{kind}: " + "; ".join(error["message"] for error in result["errors"])
    return f"{kind}: {json.dumps(result)}"


def _parse_tag(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"a tag is KEY=VALUE, not {text!r}")
    return key, value


def _parse_json_object(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"not JSON: {error}") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError("run config must be a JSON object")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m user_pipeline.graphql_triggers",
        description="Launch runs, backfills and re-executions through the Dagster webserver's GraphQL API.",
    )
    parser.add_argument(
        "--url",
        default=None,
        help=f"the webserver's base URL (default: $DAGSTER_WEBSERVER_URL or {DEFAULT_URL})",
    )
    commands = parser.add_subparsers(dest="command", required=True)

    def add_run_options(command: argparse.ArgumentParser) -> None:
        command.add_argument("--job", required=True, help="the job's name, e.g. daily_users_job")
        command.add_argument(
            "--tag",
            action="append",
            type=_parse_tag,
            default=[],
            metavar="KEY=VALUE",
            help="an extra run tag (repeatable)",
        )
        command.add_argument(
            "--config-json",
            type=_parse_json_object,
            default=None,
            metavar="JSON",
            help="run config as a JSON object (default: the job's defaults)",
        )

    launch = commands.add_parser(
        "launch-run", help="queue one run (of one partition, or of a range of them); prints the run id"
    )
    add_run_options(launch)
    launch.add_argument("--partition", help="the partition key, e.g. 2026-11-20 (sets the dagster/partition tag)")
    launch.add_argument("--from", dest="first", help="with --to: one run over this range; first partition, included")
    launch.add_argument("--to", dest="last", help="last partition of the range, included")

    backfill = commands.add_parser("backfill", help="backfill a partition range; prints the backfill id")
    add_run_options(backfill)
    backfill.add_argument("--from", dest="first", required=True, help="first partition, included")
    backfill.add_argument("--to", dest="last", required=True, help="last partition, included")

    reexecute = commands.add_parser("reexecute", help="re-execute a finished run; prints the new run id")
    reexecute.add_argument("--run-id", required=True)
    strategy = reexecute.add_mutually_exclusive_group(required=True)
    strategy.add_argument(
        "--from-failure",
        dest="strategy",
        action="store_const",
        const="FROM_FAILURE",
        help="only the steps that failed or did not run",
    )
    strategy.add_argument(
        "--all-steps", dest="strategy", action="store_const", const="ALL_STEPS", help="every step of the run again"
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    client = DagsterGraphQL(args.url)
    try:
        if args.command == "launch-run":
            if (args.first is None) != (args.last is None):
                raise TriggerError("--from and --to go together")
            partition_range = (args.first, args.last) if args.first is not None else None
            print(client.launch_run(args.job, args.partition, dict(args.tag), args.config_json, partition_range))
        elif args.command == "backfill":
            print(client.launch_backfill(args.job, args.first, args.last, dict(args.tag), args.config_json))
        else:
            print(client.reexecute(args.run_id, args.strategy))
    except TriggerError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
