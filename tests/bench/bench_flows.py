"""Benchmarks of the flow language; run by hand, never by the default test run.

    .venv/bin/python tests/bench/bench_flows.py [--files 200] [--repeat 5]

Prints (1) `actionflow validate` over N flow files, the whole process, median of
several runs, next to `check-jsonschema` on the same files as the baseline; and
(2) the per-run cost of a 20-step flow of control steps.
"""

from __future__ import annotations

import argparse
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from sqlalchemy import create_engine

from actionflow.engine import db
from actionflow.engine.flow import SCHEMA_FILE, parse_flow
from actionflow.engine.runner import run_flow

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent

TWENTY_STEPS = """
name: TwentySteps
trigger: {stripe: [payment_intent.succeeded]}
steps:
  - id: amount
    use: set
    with: {value: "{{ event.data.object.amount }}", currency: usd}
  - id: big
    use: set
    with: {is_big: "{{ steps.amount.value > 1000 }}"}
  - id: route
    use: switch
    with:
      value: "{{ steps.big.is_big }}"
      cases: {"true": large, "false": small}
  - id: small
    use: set
    with: {label: small}
  - id: small_done
    use: goto
    with: {step: check}
  - id: large
    use: set
    with: {label: large}
  - id: check
    use: assert
    with: {that: "{{ steps.amount.value > 0 }}", message: "no amount"}
  - id: s1
    use: set
    with: {x: "{{ steps.amount.value + 1 }}"}
  - id: s2
    use: set
    with: {x: "{{ steps.s1.x + 1 }}"}
  - id: skipped
    if: "{{ steps.s2.x < 0 }}"
    use: stop
    with: {reason: never}
  - id: s3
    use: set
    with: {x: "{{ steps.s2.x + 1 }}"}
  - id: s4
    use: set
    with: {text: "amount {{ steps.s3.x }} {{ steps.amount.currency }}"}
  - id: s5
    use: set
    with: {ok: "{{ steps.s4.text is string }}"}
  - id: check2
    use: assert
    with: {that: "{{ steps.s5.ok }}", message: "not text"}
  - id: s6
    use: set
    with: {y: "{{ [steps.s3.x, steps.s2.x] | max }}"}
  - id: s7
    use: set
    with: {z: "{{ steps.s6.y * 2 }}"}
  - id: s8
    use: set
    with: {label: "{{ steps.large.label if steps.large is defined else 'small' }}"}
  - id: s9
    use: set
    with: {done: true}
  - id: s10
    use: set
    with: {total: "{{ steps.s7.z + steps.s6.y }}"}
  - id: last
    use: set
    with: {summary: "{{ steps.s8.label }} {{ steps.s10.total }}"}
outputs:
  summary: "{{ steps.last.summary }}"
"""


def _write_flows(folder: Path, count: int) -> list[Path]:
    seeds = sorted((REPO / "flows").rglob("*.yaml"))
    texts = [path.read_text(encoding="utf-8") for path in seeds]
    texts.append(TWENTY_STEPS)
    files = []
    for number in range(count):
        text = texts[number % len(texts)]
        name = next(
            line.split(":", 1)[1].strip()
            for line in text.splitlines()
            if line.startswith("name:")
        )
        text = text.replace(f"name: {name}", f"name: {name}{number}", 1)
        text = text.replace("after: StripePaymentCallback", "after: Bench0")
        path = folder / f"flow_{number:03d}.yaml"
        path.write_text(text, encoding="utf-8")
        files.append(path)
    # the first file is the flow the extensions name
    files[0].write_text(
        (REPO / "flows/system/StripePaymentCallback.yaml")
        .read_text()
        .replace("name: StripePaymentCallback", "name: Bench0"),
        encoding="utf-8",
    )
    return files


def _median_seconds(
    command: list[str], repeat: int, ok: tuple[int, ...]
) -> tuple[float, float]:
    """Median wall time and median CPU time (user + system) of the command."""
    walls, cpus = [], []
    for _ in range(repeat):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        started = time.perf_counter()
        completed = subprocess.run(command, capture_output=True, text=True, check=False)
        walls.append(time.perf_counter() - started)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpus.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
        if completed.returncode not in ok:
            raise SystemExit(
                f"{command[0]} exited {completed.returncode}:\n"
                f"{completed.stdout[-2000:]}{completed.stderr[-2000:]}"
            )
    return statistics.median(walls), statistics.median(cpus)


def bench_validate(count: int, repeat: int) -> None:
    """Whole-process validate vs check-jsonschema on the same files."""
    with tempfile.TemporaryDirectory() as temp:
        folder = Path(temp)
        files = _write_flows(folder, count)
        ours = _median_seconds(
            [str(BIN / "actionflow"), "validate", str(folder)], repeat, (0,)
        )
        tool = shutil.which("check-jsonschema") or str(BIN / "check-jsonschema")
        baseline = _median_seconds(
            [tool, "--schemafile", str(SCHEMA_FILE), *map(str, files)], repeat, (0,)
        )
    print(f"validate, {count} files, whole process, median of {repeat} (wall / CPU):")
    print(
        f"  actionflow validate   {ours[0] * 1000:8.1f} ms / {ours[1] * 1000:8.1f} ms"
    )
    print(
        f"  check-jsonschema      {baseline[0] * 1000:8.1f} ms / "
        f"{baseline[1] * 1000:8.1f} ms  (schema only)"
    )
    wall_ratio, cpu_ratio = ours[0] / baseline[0], ours[1] / baseline[1]
    print(f"  ratio                 {wall_ratio:8.2f}x / {cpu_ratio:.2f}x")


def bench_run(runs: int) -> None:
    """The cost of one run of a 20-step flow of control steps."""
    flow = parse_flow(TWENTY_STEPS, "twenty.yaml")
    assert len(flow.steps) == 20
    engine = create_engine("sqlite://")
    event = {"type": "payment_intent.succeeded", "data": {"object": {"amount": 1500}}}
    with db.write(engine) as connection:
        result = run_flow(flow, connection, event=event)
        assert result.status == "succeeded", result.error
        assert result.outputs == {"summary": "large 4509"}, result.outputs
        walls, cpus = [], []
        for _ in range(5):
            started, cpu = time.perf_counter(), time.process_time()
            for _ in range(runs):
                run_flow(flow, connection, event=event)
            walls.append((time.perf_counter() - started) / runs)
            cpus.append((time.process_time() - cpu) / runs)
    wall, cpu = statistics.median(walls), statistics.median(cpus)
    print(f"run of a 20-step control flow, median of 5 x {runs} runs (wall / CPU):")
    print(f"  per run               {wall * 1e6:8.1f} µs / {cpu * 1e6:8.1f} µs")
    print(
        f"  per step              {wall * 1e6 / 20:8.1f} µs / {cpu * 1e6 / 20:8.1f} µs"
    )


def main() -> None:
    """Run both benchmarks."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--files", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--runs", type=int, default=500)
    options = parser.parse_args()
    bench_validate(options.files, options.repeat)
    bench_run(options.runs)


if __name__ == "__main__":
    main()
