"""The worker's CPU per event, in process, on SQLite: the payment path alone.

Stores N signed-shape `payment_intent.succeeded` events for N pending orders,
then calls `Processor.process_next_events` until none is due, and prints the
worker's CPU time and wall time per event with the load average. No HTTP and no
receive path: this isolates the part of the server the worker's code decides.

    .venv/bin/python -m tests.bench.worker_cpu --events 1000 --runs 3
    .venv/bin/python -m tests.bench.worker_cpu --cprofile worker.prof
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

from actionflow.engine import db
from actionflow.engine.flow import load_project
from actionflow.engine.inbox import Processor, store_events
from tests.bench.database import add_payables, flow_folder, intent_event


def one_run(workdir: Path, events: int, profile: str | None) -> tuple[float, float]:
    """CPU and wall seconds per event for one run on a fresh database."""
    path = workdir / f"worker-{time.monotonic_ns()}.sqlite"
    engine = db.create_db_engine(f"sqlite:///{path}")
    try:
        db.prepare(engine)
        payables = add_payables(engine, events, prefix="pi_worker_")
        bodies = [intent_event(p, f"evt_worker_{p.order_id}") for p in payables]
        for start in range(0, len(bodies), 200):
            group = bodies[start : start + 200]
            store_events(engine, [(body, json.dumps(body)) for body in group])
        processor = Processor(engine, load_project([flow_folder(workdir, "payment")]))
        profiler = None
        if profile:
            import cProfile

            profiler = cProfile.Profile()
            profiler.enable()
        cpu, wall = time.process_time(), time.perf_counter()
        done = 0
        while True:
            claimed = processor.process_next_events()
            if not claimed:
                break
            done += claimed
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        if profiler is not None:
            profiler.disable()
            profiler.dump_stats(profile)
        if done != events:
            raise RuntimeError(f"processed {done} events of {events}")
        return cpu / events, wall / events
    finally:
        engine.dispose()
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--cprofile", help="write a cProfile of the last run here")
    options = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        figures = []
        for run in range(options.runs):
            last = run == options.runs - 1
            cpu, wall = one_run(
                Path(folder), options.events, options.cprofile if last else None
            )
            figures.append(cpu)
            print(
                f"run {run + 1}: worker CPU {cpu * 1000:.2f} ms/event, "
                f"wall {wall * 1000:.2f} ms/event, "
                f"load average {os.getloadavg()[0]:.1f}",
                flush=True,
            )
        print(f"median worker CPU {statistics.median(figures) * 1000:.2f} ms/event")


if __name__ == "__main__":
    main()
