"""Random and mutated YAML never breaks the loader or the checker.

Whatever the text, only a FlowError comes out: never another exception, never
a hang (pytest-timeout bounds every test). Hypothesis draws the inputs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from actionflow.engine.checker import check_text
from actionflow.engine.errors import FlowError
from actionflow.engine.flow import EXAMPLE_FLOWS, SYSTEM_FLOWS, parse_flow

SEEDS = [
    path.read_text(encoding="utf-8")
    for path in sorted([*SYSTEM_FLOWS.glob("*.yaml"), *EXAMPLE_FLOWS.glob("*.yaml")])
]
FUZZ = settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
PIECES = [
    "{{",
    "}}",
    "{%",
    "%}",
    ":",
    "- ",
    "&a",
    "*a",
    "!!python/object:os.system",
    "[",
    "]",
    "{",
    "}",
    "steps.",
    "__class__",
    "goto",
    "on_error: {goto: x}",
    "\n  ",
    "'",
    '"',
    "\t",
    "<<: *a",
    "use: switch",
    "retry: {attempts: 3}",
]


def _only_flow_errors(text: str) -> None:
    try:
        _, problems = check_text(text, "fuzz.yaml")
    except FlowError:
        raise AssertionError("check_text must return problems, not raise") from None
    assert all(isinstance(problem, FlowError) for problem in problems)
    try:
        parse_flow(text, "fuzz.yaml")
    except FlowError:
        pass


@FUZZ
@given(st.text(max_size=400))
def test_random_text_gives_only_flow_errors(text: str) -> None:
    _only_flow_errors(text)


@st.composite
def mutated(draw: st.DrawFn) -> str:
    text = draw(st.sampled_from(SEEDS))
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, len(text)))
        action = draw(st.sampled_from(["insert", "delete", "piece", "duplicate"]))
        if action == "insert":
            text = text[:at] + draw(st.text(max_size=8)) + text[at:]
        elif action == "delete":
            text = text[:at] + text[at + draw(st.integers(1, 40)) :]
        elif action == "piece":
            text = text[:at] + draw(st.sampled_from(PIECES)) + text[at:]
        else:
            lines = text.splitlines(keepends=True)
            line = draw(st.integers(0, max(len(lines) - 1, 0)))
            text = "".join(lines[: line + 1] + lines[line:])
    return text


@FUZZ
@given(mutated())
def test_mutated_flows_give_only_flow_errors(text: str) -> None:
    _only_flow_errors(text)


def _containers(inner: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    keys = st.sampled_from(
        ["id", "use", "with", "if", "retry", "on_error", "goto", "step", "x"]
    )
    lists = st.lists(inner, max_size=4)
    return lists | st.dictionaries(keys, inner, max_size=4)


JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(10**6), 10**6)
    | st.text(max_size=12)
    | st.sampled_from(["{{ steps.payment.row }}", "{{ event.x }}", "payment", "stop"]),
    _containers,
    max_leaves=20,
)


@st.composite
def structured(draw: st.DrawFn) -> str:
    data: Any = yaml.safe_load(draw(st.sampled_from(SEEDS)))
    steps = data["steps"]
    step = steps[draw(st.integers(0, len(steps) - 1))]
    key = draw(st.sampled_from(["with", "if", "use", "id", "retry", "on_error", "x"]))
    step[key] = draw(JSON)
    if draw(st.booleans()):
        data[draw(st.sampled_from(["trigger", "outputs", "inputs", "name"]))] = draw(
            JSON
        )
    return yaml.safe_dump(data, sort_keys=False)


@FUZZ
@given(structured())
def test_structurally_mutated_flows_give_only_flow_errors(text: str) -> None:
    _only_flow_errors(text)


def _alias_bomb() -> str:
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for level in range(1, 12):
        prev, name = chr(96 + level), chr(97 + level)
        lines.append(f"{name}: &{name} [{', '.join(['*' + prev] * 9)}]")
    return "\n".join(lines)


@pytest.mark.timeout(60)  # a blow-up would hang here; the limits refuse at once
def test_alias_bombs_and_deep_nesting_are_refused_quickly() -> None:
    for text in [
        _alias_bomb(),
        "[" * 100_000,
        "a:\n" + "".join("  " * depth + "- \n" for depth in range(200)),
        "name: X\nsteps:\n  - {id: a, use: set, with: {x: '{{ " + "(" * 5000 + "'}}\n",
    ]:
        _, problems = check_text(text, "bomb.yaml")
        assert problems, text[:40]


def test_every_repo_flow_survives_its_own_round_trip() -> None:
    for path in [*SYSTEM_FLOWS.glob("*.yaml"), *EXAMPLE_FLOWS.glob("*.yaml")]:
        assert parse_flow(path.read_text(), str(path)).name == Path(path).stem
