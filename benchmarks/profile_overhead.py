"""Where Dagster's overhead goes when one day of users is materialized in process.

    python -m benchmarks.profile_overhead [--users 5000] [--repeat 3] [--markdown PATH]

Against the bundled API server, in temporary instances made from dagster_home/dagster.yaml:

1. process start and imports: ``python -c pass``, the bare script's imports, ``import dagster``,
   ``import user_pipeline.definitions`` (wall and CPU, median of --repeat), and
   ``python -X importtime -c "import user_pipeline.definitions"`` summed per top-level package;
2. one day materialized: the bare script, ``dagster asset materialize`` (one process), Dagster's
   floor (the same command on ``benchmarks.noop_assets``, the same graph doing nothing), and both
   again with the compute log manager switched off (``NoOpComputeLogManager`` in a copy of the
   instance config: no stdout/stderr capture, so no ``tail``/watcher processes), interleaved,
   --repeat times, with the processes each started;
3. a pyinstrument profile (if pyinstrument is installed: ``pip install pyinstrument``) of one
   ``dagster asset materialize`` and one bare run, its samples put in buckets: the pipeline's own
   work (the asset bodies, or the bare script's loop), imports, event log writes, resource
   initialization, compute log capture, instance setup, code location loading, run and plan
   creation, and the rest of Dagster's step machinery.

Prints Markdown. Nothing here is needed by benchmarks.run.
"""

from __future__ import annotations

import argparse
import importlib.util
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from benchmarks.proctree import TreeMeter, become_subreaper
from benchmarks.run import (
    BIN_DIR,
    DAILY_ASSETS,
    INSTANCE_CONFIG,
    PAGE_SIZE,
    REPO_ROOT,
    Days,
    machine_info,
    tail,
)

ASSET_FUNCTIONS = {"daily_users"}  # the users day chain: its per-day functions run inside it
# Instance configuration, not an import: dagster.yaml names a compute log manager by module and
# class, and Dagster documents this one only at its internal module (API reference, "Internals").
NOOP_COMPUTE_LOGS = """
compute_logs:
  module: dagster._core.storage.noop_compute_log_manager
  class: NoOpComputeLogManager
"""

# (bucket, predicate on (function, file)) in priority order: a sample goes to the highest-priority
# bucket among the frames of its stack.
BUCKETS = [
    (
        "the pipeline's own work (asset bodies; bare: its loop)",
        lambda fn, fp: (
            (fp.endswith("user_pipeline/users/assets.py") and fn in ASSET_FUNCTIONS)
            or (fp.endswith("benchmarks/bare.py") and fn == "run")
        ),
    ),
    ("imports (module loading)", lambda fn, fp: fn == "_find_and_load"),
    ("event log writes (SQLite instance)", lambda fn, fp: fn in ("handle_new_event", "store_event")),
    ("resource initialization", lambda fn, fp: fn == "resource_initialization_event_generator"),
    ("compute log capture", lambda fn, fp: "compute_log" in fp or fn == "capture_logs"),
    (
        "instance setup (storage, migrations check)",
        lambda fn, fp: fn in ("get_possibly_temporary_instance_for_cli", "create_instance_from_ref", "dispose"),
    ),
    (
        "code location loading (beyond imports)",
        lambda fn, fp: (
            fn
            in (
                "get_repository_python_origin_from_cli_opts",
                "get_loadable_targets",
                "get_job_def_from_code_pointer",
                "recon_job_from_origin",
                "get_definitions",
                "load_definitions",
                "get_repository_def",
            )
        ),
    ),
    (
        "run and execution plan creation",
        lambda fn, fp: fn in ("create_run_for_job", "create_execution_plan", "_get_execution_plan_from_run"),
    ),
    (
        "other Dagster run machinery (steps, checks, outputs, logging)",
        lambda fn, fp: fn in ("execute_job", "execute_run", "_logged_execute_job"),
    ),
]
OTHER = "other (interpreter, CLI parsing, exit)"


PROTECTED: set[int] = set()  # the API server: a child of this process that no measurement owns


def measure(command: list[str], env: dict[str, str], log: Path, timeout: float = 600) -> dict:
    with TreeMeter(protected=PROTECTED) as meter:
        started = time.perf_counter()
        with log.open("ab") as out:
            process = subprocess.Popen(command, cwd=REPO_ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
        meter.add_root(process.pid)
        returncode = process.wait(timeout=timeout)
        wall = time.perf_counter() - started
        meter.settle(timeout=60)
    if returncode:
        raise RuntimeError(f"exited {returncode}: {' '.join(command)}\n{tail(log)}")
    return {"wall": wall, "cpu": meter.cpu_seconds, "rss": meter.peak_rss_bytes / 2**20, "processes": len(meter.seen)}


def summary(rows: list[dict], key: str, fmt: str = ".2f") -> str:
    values = [row[key] for row in rows]
    text = format(statistics.median(values), fmt)
    return text + (f" ({format(min(values), fmt)}–{format(max(values), fmt)})" if len(values) > 1 else "")


def importtime_by_package(env: dict[str, str]) -> tuple[float, Counter]:
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", "import user_pipeline.definitions"],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    by_package: Counter = Counter()
    for line in done.stderr.splitlines():
        match = re.match(r"import time:\s+(\d+) \|\s+(\d+) \|\s*(\S+)", line)
        if match:
            by_package[match[3].split(".")[0]] += int(match[1]) / 1e6
    return sum(by_package.values()), by_package


def buckets_from_session(path: Path) -> tuple[float, Counter]:
    from pyinstrument.session import Session

    session = Session.load(str(path))
    totals: Counter = Counter()

    def walk(frame, bucket_index: int) -> None:
        function, file_path = frame.function or "", frame.file_path or ""
        for index, (_, predicate) in enumerate(BUCKETS[:bucket_index]):
            if predicate(function, file_path):
                bucket_index = index
                break
        own = frame.time - sum(child.time for child in frame.children)
        if own > 0:
            totals[BUCKETS[bucket_index][0] if bucket_index < len(BUCKETS) else OTHER] += own
        for child in frame.children:
            walk(child, bucket_index)

    walk(session.root_frame(), len(BUCKETS))
    return session.duration, totals


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.profile_overhead", description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=5000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--markdown", type=Path, default=None)
    args = parser.parse_args(argv)
    become_subreaper()
    from user_pipeline_tools.randomuser_server.launcher import RandomUserServer

    root = Path(tempfile.mkdtemp(prefix="user-pipeline-profile-"))
    out: list[str] = []
    try:
        with RandomUserServer(startup_timeout=60) as api:
            PROTECTED.add(api._proc.pid)
            homes = {"repo": root / "home", "noop": root / "home-noop"}
            for name, home in homes.items():
                home.mkdir()
                config = INSTANCE_CONFIG.read_text() + (NOOP_COMPUTE_LOGS if name == "noop" else "")
                (home / "dagster.yaml").write_text(config)
                subprocess.run(
                    [sys.executable, "-c", "import dagster; dagster.DagsterInstance.get().dispose()"],
                    cwd=REPO_ROOT,
                    env={**_env(api.base_url, args.users, root / "x", home)},
                    check=True,
                    capture_output=True,
                    timeout=300,
                )
            counter = iter(range(10_000))

            def env_for(home: Path) -> tuple[dict[str, str], Path]:
                data_dir = root / f"run-{next(counter)}"
                return _env(api.base_url, args.users, data_dir, home), data_dir

            # 1. process start and imports
            starts = {
                "python -c pass": [sys.executable, "-c", "pass"],
                "bare script's imports (pandas, requests, the plain modules)": [
                    sys.executable,
                    "-c",
                    "import benchmarks.bare",
                ],
                "import dagster": [sys.executable, "-c", "import dagster"],
                "import user_pipeline.definitions": [sys.executable, "-c", "import user_pipeline.definitions"],
            }
            start_rows: dict[str, list[dict]] = {name: [] for name in starts}
            for _ in range(args.repeat):
                for name, command in starts.items():
                    env, _ = env_for(homes["repo"])
                    start_rows[name].append(measure(command, env, root / "starts.log"))
            total_imports, by_package = importtime_by_package(env_for(homes["repo"])[0])

            # 2. one day: bare, the assets, and Dagster's floor (the same graph doing nothing)
            days = Days()

            def materialize(module: str) -> list[str]:
                return [
                    str(BIN_DIR / "dagster"),
                    "asset",
                    "materialize",
                    "-m",
                    module,
                    "--select",
                    ",".join(DAILY_ASSETS),
                    "--partition",
                ]

            ways = {  # name -> (command without the day, instance)
                "bare script": ([sys.executable, "-m", "benchmarks.bare"], "repo"),
                "dagster asset materialize": (materialize("user_pipeline.definitions"), "repo"),
                "dagster asset materialize, NoOpComputeLogManager": (materialize("user_pipeline.definitions"), "noop"),
                "Dagster's floor (benchmarks.noop_assets)": (materialize("benchmarks.noop_assets"), "repo"),
                "Dagster's floor, NoOpComputeLogManager": (materialize("benchmarks.noop_assets"), "noop"),
            }
            runs: dict[str, list[dict]] = {name: [] for name in ways}
            for _ in range(args.repeat):
                day = days.take(1)[0]
                for name, (command, home) in ways.items():
                    env, _ = env_for(homes[home])
                    runs[name].append(measure([*command, day], env, root / "runs.log"))

            # 3. profiles
            profiles: dict[str, tuple[float, Counter]] = {}
            if importlib.util.find_spec("pyinstrument") is not None:
                day = days.take(1)[0]
                for name, command in (
                    (
                        "dagster asset materialize",
                        ["-m", "dagster", *materialize("user_pipeline.definitions")[1:], day],
                    ),
                    ("bare script", ["-m", "benchmarks.bare", day]),
                ):
                    env, _ = env_for(homes["repo"])
                    session = root / f"{name.split()[0]}.pyisession"
                    measure(
                        [sys.executable, "-m", "pyinstrument", "-r", "session", "-o", str(session), *command],
                        env,
                        root / "profile.log",
                    )
                    profiles[name] = buckets_from_session(session)
    finally:
        shutil.rmtree(root, ignore_errors=True)

    info = machine_info()
    out += [
        f"Command: `python -m benchmarks.profile_overhead --users {args.users} --repeat {args.repeat}`",
        "",
        "Machine: " + ", ".join(f"{key} {value}" for key, value in info.items()),
        "",
        "#### Process start and imports",
        "",
        "| what | wall s | CPU s | peak RSS MB |",
        "| --- | ---: | ---: | ---: |",
    ]
    for name, rows in start_rows.items():
        out.append(f"| {name} | {summary(rows, 'wall')} | {summary(rows, 'cpu')} | {summary(rows, 'rss', '.0f')} |")
    out += [
        "",
        f'`python -X importtime -c "import user_pipeline.definitions"`: {total_imports:.2f} s of imports '
        "(self time summed per top-level package): "
        + ", ".join(f"{name} {seconds:.2f}" for name, seconds in by_package.most_common(10)),
        "",
    ]
    out += [
        f"#### One day of {args.users:,} users",
        "",
        "| mode | wall s | CPU s | peak RSS MB | processes started |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for name, rows in runs.items():
        out.append(
            f"| {name} | {summary(rows, 'wall')} | {summary(rows, 'cpu')} | {summary(rows, 'rss', '.0f')} "
            f"| {summary(rows, 'processes', '.0f')} |"
        )
    out.append("")
    if profiles:
        names = list(profiles)
        out += [
            f"#### pyinstrument, one day of {args.users:,} users (wall seconds of samples per bucket)",
            "",
            "| bucket | " + " | ".join(names) + " |",
            "| --- |" + " ---: |" * len(names),
        ]
        for bucket in [name for name, _ in BUCKETS] + [OTHER]:
            cells = []
            for duration, totals in profiles.values():
                value = totals.get(bucket, 0.0)
                cells.append(f"{value:.2f} ({value / duration * 100:.0f}%)" if value else "–")
            out.append(f"| {bucket} | " + " | ".join(cells) + " |")
        out.append("| total (profiled process) | " + " | ".join(f"{profiles[name][0]:.2f}" for name in names) + " |")
    else:
        out.append("(pyinstrument is not installed: no profile; `pip install pyinstrument`)")
    text = "\n".join(out)
    print(text)
    if args.markdown:
        args.markdown.write_text(text + "\n")
    return 0


def _env(api_url: str, users: int, data_dir: Path, home: Path) -> dict[str, str]:
    import os

    return {
        **os.environ,
        "USER_PIPELINE_API_URL": api_url,
        "USER_PIPELINE_USERS_PER_PARTITION": str(users),
        "USER_PIPELINE_PAGE_SIZE": str(PAGE_SIZE),
        "USER_PIPELINE_DATA_DIR": str(data_dir),
        "USER_PIPELINE_WAREHOUSE_URL": f"sqlite:///{data_dir}/warehouse.sqlite",
        "DAGSTER_HOME": str(home),
    }


if __name__ == "__main__":
    sys.exit(main())
