"""Print a dry run's plan for people: runs, row changes, notifications, differences.

The renderer reads the plan as data (the dict `--json` prints), so it shows
whatever the plan holds: the runs of a whole event path, or one run; the
notifications it captured; the Stripe requests it recorded; a replay's
differences. On a terminal it uses colour; piped, or with NO_COLOR set, it
prints the same text without colour codes.
"""

from __future__ import annotations

import json
import os
import re
from typing import Any

import click

from actionflow.engine.jsonvalues import dumps

# Columns a change shows only when nothing else changed: they move every write.
QUIET_COLUMNS = frozenset({"updated_at", "created_at"})

_STATUS_COLOURS = {
    "succeeded": "green",
    "ok": "green",
    "failed": "red",
    "stopped": "yellow",
    "skipped": "yellow",
    "ignored": "yellow",
    "caught": "yellow",
    "retried": "yellow",
}


def colour_choice(explicit: bool | None = None) -> bool | None:
    """Colour on or off: as asked, off with NO_COLOR, else click decides (a tty)."""
    if explicit is not None:
        return explicit
    if os.environ.get("NO_COLOR"):
        return False
    return None


def render(plan: dict[str, Any], *, color: bool | None = None) -> None:
    """Print `plan` (or one run's report) to stdout."""
    color = colour_choice(color)
    for line in lines(printable(plan)):
        click.echo(line, color=color)


# Characters an event may carry that would act on a terminal instead of being
# shown: C0 controls but tab and newline, DEL, C1 controls, and the bidi
# overrides that reorder what is displayed.
_CONTROLS = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def printable(value: Any) -> Any:
    """`value` with every control character in its text shown as an escape."""
    if isinstance(value, str):
        return _CONTROLS.sub(lambda found: f"\\u{ord(found.group()):04x}", value)
    if isinstance(value, dict):
        return {printable(key): printable(item) for key, item in value.items()}
    if isinstance(value, list):
        return [printable(item) for item in value]
    return value


def lines(plan: dict[str, Any]) -> list[str]:
    """The plan as lines of text, styled (click strips the styles off a pipe)."""
    runs = plan["runs"] if "runs" in plan else [plan]
    out = [_title(plan), ""]
    for run in runs:
        out += _run(run)
        out.append("")
    out += _notifications(plan.get("notifications") or [])
    if "runs" in plan:  # a single run's report shows its requests with it
        out += _stripe_requests(plan.get("stripe_requests") or [])
    out += _notes(plan.get("notes") or [])
    if "differences" in plan:
        out += _differences(plan["differences"])
    out.append(_verdict(plan, runs))
    return out


def _title(plan: dict[str, Any]) -> str:
    event = plan.get("event") or {}
    if event.get("type"):
        what = f"event {event['type']}"
        if event.get("id"):
            what += f" {event['id']}"
    elif "action" in plan:
        what = f"action {plan['action']}"
    else:
        what = f"flow {plan.get('flow')}"
    if "recorded" in plan:
        heading = click.style(f"Replay of stored {what}", bold=True)
        return (
            f"{heading} through the current flows (it was "
            f"{plan['recorded']['status']}): nothing was written, nothing was sent"
        )
    heading = click.style(f"Dry run of {what}", bold=True)
    return f"{heading}: nothing was written, nothing was sent"


def _run(run: dict[str, Any]) -> list[str]:
    name = run.get("flow") or run.get("action") or "?"
    label = f"{'action' if 'action' in run else 'flow'} {name}"
    if run.get("after"):
        label = f"extension {name} (after {run['after']})"
    out = [f"{click.style(label, bold=True)}  {_status(run['status'])}"]
    if run.get("reason"):
        out.append(f"  reason: {run['reason']}")
    out += _steps(run.get("steps") or [])
    for change in run.get("changes") or []:
        out.append("  " + _change(change))
    out += _stripe_requests(run.get("stripe_requests") or [], indent="  ")
    if run.get("error"):
        out.append("  " + click.style(f"error: {run['error']}", fg="red"))
    if run.get("rolled_back"):
        out.append(
            "  its writes and queued messages roll back; processing retries it "
            "with backoff, and the flows before it stand"
        )
    if run.get("outputs") is not None:
        out.append(f"  outputs: {_json(run['outputs'])}")
    return out


def _steps(steps: list[dict[str, Any]]) -> list[str]:
    width = max((len(step["step"]) for step in steps), default=0)
    uses = max((len(step["use"]) for step in steps), default=0)
    out = []
    for step in steps:
        outcome = step["outcome"]
        cell = _status(outcome) + " " * (8 - len(outcome))
        line = f"  {step['step']:<{width}}  {cell} {step['use']:<{uses}}"
        if step.get("attempt"):
            line += f"  attempt {step['attempt']}"
        if step.get("reason"):
            line += f"  {step['reason']}"
        out.append(line.rstrip())
    return out


def _change(change: dict[str, Any]) -> str:
    table, before, after = change["table"], change.get("before"), change["after"]
    step = f"  [{change['step']}]" if change.get("step") else ""
    if before is None:
        text = f"would insert into {table}: {_json(after)}"
        return click.style("+ ", fg="green") + text + step
    moved = {
        key: value
        for key, value in after.items()
        if before.get(key) != value and key not in QUIET_COLUMNS
    }
    fields = ", ".join(
        f"{key} {_json(before.get(key))} -> {_json(value)}"
        for key, value in moved.items()
    )
    text = f"would update {table} {after.get('id')}: {fields or 'no column changes'}"
    return click.style("~ ", fg="yellow") + text + step


def _notifications(notes: list[dict[str, Any]]) -> list[str]:
    if not notes:
        return []
    out = [click.style("Notifications (captured, not sent)", bold=True)]
    for note in notes:
        where = f"{note['flow']}.{note['step']}"
        if note["kind"] == "email":
            out.append(f"  email    {where}  to {', '.join(note['to'])}")
            out.append(f"           subject: {note['subject']}")
            out += _body(note.get("text") or note.get("html") or "")
        elif note["kind"] == "webhook":
            out.append(f"  webhook  {where}  POST {note['url']}")
            out += _body(json.dumps(note["payload"], indent=2, sort_keys=True))
        else:
            out.append(f"  log      {where}  {note['line']}")
        if note.get("note"):
            out.append("           " + click.style(note["note"], fg="yellow"))
    return [*out, ""]


def _body(text: str) -> list[str]:
    return [("           | " + line).rstrip() for line in text.rstrip().splitlines()]


def _stripe_requests(requests: list[dict[str, Any]], indent: str = "") -> list[str]:
    if not requests:
        return []
    out = [indent + click.style("Stripe requests (not sent to Stripe)", bold=True)]
    for request in requests:
        line = f"{indent}  {request.get('method', '?')} {request.get('path', '?')}"
        if request.get("step"):
            line += f"  [{request['step']}"
            if request.get("attempt"):
                line += f" attempt {request['attempt']}"
            line += "]"
        if request.get("idempotency_key"):
            line += f"  key {request['idempotency_key']}"
        if request.get("answered_from"):
            line += f"  answered from {request['answered_from']}"
        answer = _answer(request.get("response"))
        if answer:
            line += f": {answer}"
        out.append(line)
        if request.get("params"):
            out.append(f"{indent}    {_json(request['params'])}")
    return [*out, ""] if not indent else out


def _answer(response: Any) -> str:
    """What Stripe's answer says, in a word: its status, or its error."""
    if not isinstance(response, dict):
        return ""
    error = response.get("error")
    if isinstance(error, dict):
        return f"error {error.get('type') or error.get('code') or ''}".strip()
    status = response.get("status")
    return _status(str(status)) if status else ""


def _notes(notes: list[str]) -> list[str]:
    if not notes:
        return []
    return [
        click.style("Notes", bold=True),
        *(f"  - {note}" for note in notes),
        "",
    ]


def _differences(differences: list[dict[str, Any]]) -> list[str]:
    heading = click.style("Differences from the recorded processing", bold=True)
    if not differences:
        return [heading, "  no difference", ""]
    return [heading, *(f"  - {item['text']}" for item in differences), ""]


def _verdict(plan: dict[str, Any], runs: list[dict[str, Any]]) -> str:
    status = plan.get("status", "succeeded")
    failed = [run for run in runs if run["status"] == "failed"]
    if failed:
        reasons = "; ".join(_failure(run) for run in failed)
        return f"{click.style('Plan: failed', fg='red', bold=True)}: {reasons}"
    if status in ("skipped", "ignored"):
        why = f": {plan['reason']}" if plan.get("reason") else ""
        return click.style(f"Plan: {status}", fg="yellow", bold=True) + why
    count = sum(len(run.get("changes") or []) for run in runs)
    return (
        click.style(f"Plan: {status}", fg="green", bold=True)
        + f" ({len(runs)} run{'s' * (len(runs) != 1)}, "
        f"{count} row change{'s' * (count != 1)})"
    )


def _failure(run: dict[str, Any]) -> str:
    name = run.get("flow") or run.get("action")
    kind = "extension" if run.get("after") else "action" if "action" in run else "flow"
    failed = [step for step in run.get("steps") or [] if step["outcome"] == "failed"]
    where = f" step {failed[-1]['step']}" if failed else ""
    return f"{kind} {name}{where}: {run.get('error')}"


def _status(word: str) -> str:
    return click.style(word, fg=_STATUS_COLOURS.get(word))


def _json(value: Any) -> str:
    return json.dumps(json.loads(dumps(value)), ensure_ascii=False)
