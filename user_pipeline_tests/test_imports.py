"""The pipeline, its tooling and its benchmarks use Dagster's public API only: no `dagster._*`
module is imported (import-linter, which `make test` runs for the other import contracts, cannot
forbid an external package's subpackage)."""

import ast
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
CHECKED = ("user_pipeline", "user_pipeline_tools", "benchmarks", "spark_jobs")


def private_dagster_imports(source: str) -> list[str]:
    """The `dagster._*` modules (or `from dagster import _x` names) that `source` imports."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            module = node.module
            names = [f"{module}.{alias.name}" for alias in node.names] if module == "dagster" else [module]
        else:
            continue
        found += [name for name in names if name.split(".")[0].startswith("dagster") and "._" in name]
    return found


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("from dagster._core.instance.ref import InstanceRef", ["dagster._core.instance.ref"]),
        ("import dagster._core.execution.backfill as backfill", ["dagster._core.execution.backfill"]),
        ("from dagster import _check", ["dagster._check"]),
        ("from dagster_pyspark._internal import x", ["dagster_pyspark._internal"]),
        ("import dagster as dg\nfrom dagster import AssetKey", []),
        ("from ._private import helper", []),
    ],
)
def test_the_check_finds_private_dagster_imports(source, expected):
    assert private_dagster_imports(source) == expected


def test_no_private_dagster_module_is_imported():
    found = {
        str(path.relative_to(REPO_ROOT)): names
        for package in CHECKED
        for path in sorted((REPO_ROOT / package).rglob("*.py"))
        if (names := private_dagster_imports(path.read_text()))
    }
    assert found == {}
