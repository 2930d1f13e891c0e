"""The schema and the loader agree: what one refuses, the other refuses too."""

from __future__ import annotations

import copy
import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from actionflow.engine.checker import check_document
from actionflow.engine.flowschema import SCHEMA_FILE, generated_schema, render
from actionflow.engine.schemaerrors import flow_schema
from actionflow.engine.steps import load_builtins
from actionflow.engine.yamlfile import YamlDocument, load_yaml

REPO = Path(__file__).resolve().parents[2]
REPO_FLOWS = sorted((REPO / "flows").rglob("*.yaml"))
UNKNOWN = "zz_unknown"


def _document(path: Path) -> YamlDocument:
    return load_yaml(path.read_text(encoding="utf-8"), str(path))


def test_the_schema_file_is_generated_from_the_step_registry() -> None:
    current = SCHEMA_FILE.read_text(encoding="utf-8")
    assert render(generated_schema(json.loads(current))) == current, (
        "run `python -m actionflow.engine.flowschema` to regenerate the schema"
    )


def test_every_property_of_the_schema_has_a_description() -> None:
    schema = json.loads(SCHEMA_FILE.read_text(encoding="utf-8"))
    missing = []

    def visit(node: Any, where: str) -> None:
        if not isinstance(node, dict):
            return
        for name, child in node.get("properties", {}).items():
            if "description" not in child and "$ref" not in child:
                missing.append(f"{where}/properties/{name}")
            visit(child, f"{where}/properties/{name}")
        for keyword in ("$defs", "then"):
            for name, child in node.get(keyword, {}).items():
                visit(child, f"{where}/{keyword}/{name}")
        for keyword in ("items", "additionalProperties"):
            visit(node.get(keyword), f"{where}/{keyword}")
        for keyword in ("allOf", "anyOf", "oneOf"):
            for index, child in enumerate(node.get(keyword, [])):
                visit(child, f"{where}/{keyword}/{index}")

    visit(schema, "")
    assert missing == []


@pytest.mark.parametrize("path", REPO_FLOWS, ids=[path.stem for path in REPO_FLOWS])
def test_every_repo_flow_passes_the_schema_and_the_checker(path: Path) -> None:
    document = _document(path)
    assert list(flow_schema().iter_errors(document.data)) == []
    _, problems = check_document(document)
    assert problems == []


def test_every_repo_flow_passes_check_jsonschema() -> None:
    tool = shutil.which("check-jsonschema") or str(
        Path(__file__).resolve().parents[2] / ".venv" / "bin" / "check-jsonschema"
    )
    completed = subprocess.run(
        [tool, "--schemafile", str(SCHEMA_FILE), *map(str, REPO_FLOWS)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr


def _mappings(data: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every closed mapping of a flow: where a stray key must be refused."""
    builtins = load_builtins()
    yield "the flow", data
    if isinstance(data.get("trigger"), dict):
        yield "trigger", data["trigger"]
    for name, spec in (data.get("inputs") or {}).items():
        yield f"inputs.{name}", spec
    for step in data["steps"]:
        yield f"step {step['id']}", step
        if isinstance(step.get("retry"), dict):
            yield f"step {step['id']} retry", step["retry"]
        if isinstance(step.get("on_error"), dict):
            yield f"step {step['id']} on_error", step["on_error"]
        closed = builtins[step["use"]].inputs.get("additionalProperties") is False
        if closed and isinstance(step.get("with"), dict):
            yield f"step {step['id']} with", step["with"]


@pytest.mark.parametrize("path", REPO_FLOWS, ids=[path.stem for path in REPO_FLOWS])
def test_a_stray_key_the_loader_refuses_is_refused_by_the_schema(path: Path) -> None:
    original = _document(path).data
    places = [where for where, _ in _mappings(original)]
    assert places
    for index, where in enumerate(places):
        data = copy.deepcopy(original)
        target = list(_mappings(data))[index][1]
        target[UNKNOWN] = 1
        document = YamlDocument(data=data, file=str(path))
        _, problems = check_document(document)
        assert any(UNKNOWN in problem.message for problem in problems), where
        assert list(flow_schema().iter_errors(data)), where


def test_an_unknown_step_type_is_refused_by_both() -> None:
    data = _document(REPO / "flows/examples/MarkOrderPaid.yaml").data
    data["steps"][0]["use"] = "table.gte"
    _, problems = check_document(YamlDocument(data=data, file="x.yaml"))
    assert [problem.message for problem in problems] == [
        "unknown step type 'table.gte'; did you mean 'table.get'?"
    ]
    assert list(flow_schema().iter_errors(data))
