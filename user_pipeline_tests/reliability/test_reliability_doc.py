"""docs/reliability.md shows exactly the fault catalogue, and every piece of evidence is a real test."""

import ast
from pathlib import Path

from user_pipeline_tests.reliability.catalogue import DOC, FAULTS, doc_with_table

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_the_doc_table_is_the_catalogue():
    doc = DOC.read_text(encoding="utf-8")
    assert doc == doc_with_table(doc), "run: python -m user_pipeline_tests.reliability.catalogue --write"


def test_every_fault_names_an_existing_test():
    for fault in FAULTS:
        path, test = fault.evidence.split("::")
        tree = ast.parse((REPO_ROOT / path).read_text(encoding="utf-8"))
        names = {node.name for node in ast.walk(tree) if isinstance(node, ast.FunctionDef)}
        assert test in names, f"{fault.fault}: no {test} in {path}"
