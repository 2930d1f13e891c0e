"""Benchmark the payment path end to end, against a hand-written baseline.

For each run, on a new database: pay N orders by sending N signed
`payment_intent.succeeded` events to a real server from concurrent senders,
and time it from the first send to the last order paid; then, as a separate
phase, offer events at a fixed rate (open loop) and measure how long each
acknowledgement took. The same run is made against tests/bench/baseline_app.py,
and the figures are printed as medians with the ratio actionflow / baseline.

    python -m tests.bench.payment_path           # SQLite, 2000 events, 3 runs
    python -m tests.bench.payment_path --stored 1000,100000,1000000
    python -m tests.bench.payment_path --postgres postgresql://postgres@127.0.0.1/test
    python -m tests.bench.payment_path --long 600 --systems actionflow
    python -m tests.bench.payment_path --profile bench-profile

(with the venv's python, from the repository root).

It prints figures; it never passes or fails on them. It stops with an error
if an order is not paid or an event is refused, since then the figures lie.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, overload

from actionflow.engine import db

from . import load
from .database import (
    FLOW_SETS,
    Databases,
    Payable,
    Watcher,
    add_payables,
    flow_folder,
    intent_event,
)
from .processes import SYSTEMS, WEBHOOK_SECRET, Deployment, start
from .profile import Recording, summarise

POLL_SECONDS = 0.05
STALL_SECONDS = 120.0


@dataclass
class Figures:
    """What one run of one system measured."""

    system: str
    backend: str
    stored: int
    workers: int
    events: int
    processed_per_second: float = 0.0
    acknowledged_per_second: float = 0.0
    latency_rate: float = 0.0
    latency_events: int = 0
    latency_p50_ms: float = 0.0
    latency_p99_ms: float = 0.0
    latency_max_ms: float = 0.0
    late_sends: int = 0
    server_peak_rss_mib: float = 0.0
    worker_peak_rss_mib: list[float] = field(default_factory=list)
    cpu_ms_per_event: float = 0.0
    driver_cpu_seconds: float = 0.0
    load_average: float = 0.0  # the machine's 1-minute load average at the end


class Events(Sequence[dict[str, Any]]):
    """The succeeded events for a list of payables, built when sent."""

    def __init__(self, payables: list[Payable], first_number: int) -> None:
        self.payables = payables
        self.first = first_number

    def __len__(self) -> int:
        return len(self.payables)

    @overload
    def __getitem__(self, index: int) -> dict[str, Any]: ...
    @overload
    def __getitem__(self, index: slice) -> Sequence[dict[str, Any]]: ...
    def __getitem__(self, index: int | slice) -> Any:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        number = self.first + index
        return intent_event(self.payables[index], f"evt_bench_{number:08d}")

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return (self[i] for i in range(len(self)))


def _driver_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def _wait_paid(
    watcher: Watcher, deployment: Deployment, target: int, since: float
) -> float:
    """Poll until `target` orders are paid; the monotonic time it was seen."""
    last_count, last_change = -1, time.monotonic()
    while True:
        count = await asyncio.to_thread(watcher.paid)
        now = time.monotonic()
        if count >= target:
            return now
        if count != last_count:
            last_count, last_change = count, now
        elif now - last_change > STALL_SECONDS:
            raise RuntimeError(
                f"{deployment.system}: {count} of {target} orders paid and no "
                f"progress for {STALL_SECONDS:.0f} s (started {now - since:.0f} s ago)"
            )
        deployment.check_alive()
        await asyncio.sleep(POLL_SECONDS)


async def _throughput(
    deployment: Deployment, watcher: Watcher, events: Events, concurrency: int
) -> tuple[load.Sent, float]:
    started = asyncio.get_running_loop().create_future()
    sending = asyncio.create_task(
        load.closed_loop(
            deployment.url,
            events,
            WEBHOOK_SECRET,
            concurrency,
            on_start=started.set_result,
        )
    )
    since = await started
    waiting = asyncio.create_task(_wait_paid(watcher, deployment, len(events), since))
    sent = await sending
    if sent.failures:
        waiting.cancel()
        _refused(deployment.system, sent)
    return sent, await waiting


async def _latency(
    deployment: Deployment, watcher: Watcher, events: Events, rate: float, total: int
) -> load.Sent:
    sent = await load.open_loop(deployment.url, events, WEBHOOK_SECRET, rate)
    _refused(deployment.system, sent)
    await _wait_paid(watcher, deployment, total, sent.started)
    return sent


def _refused(system: str, sent: load.Sent) -> None:
    if sent.failures:
        shown = "\n  ".join(sent.failures[:5])
        raise RuntimeError(
            f"{system}: {len(sent.failures)} events were not acknowledged:\n  {shown}"
        )


def measure(
    system: str,
    databases: Databases,
    options: argparse.Namespace,
    stored: int,
    workers: int,
    run: int,
    profile_to: Path | None = None,
) -> Figures:
    """One run of `system` on a new database: throughput, then latency."""
    backend = "postgresql" if options.postgres else "sqlite"
    figures = Figures(system, backend, stored, workers, options.events)
    latency_count = 0 if profile_to else int(options.rate * options.latency_seconds)
    url = databases.create(f"{system}-{stored}-{workers}-{run}", stored)
    engine = db.create_db_engine(url)
    payables = add_payables(engine, options.events + latency_count, prefix="pi_bench_")
    engine.dispose()
    measured = Events(payables[: options.events], 0)
    offered = Events(payables[options.events :], options.events)
    watcher = Watcher(url, payables[0].order_id, payables[-1].order_id)
    deployment = start(system, url, workers, options.workdir)
    try:
        cpu_before, driver_before = sum(deployment.cpu_seconds()), _driver_cpu()
        recording = None
        if profile_to:
            recording = Recording(deployment.server.pid, profile_to)
        sent, done = asyncio.run(
            _throughput(deployment, watcher, measured, options.concurrency)
        )
        if recording:
            recording.stop()
        _refused(system, sent)
        figures.processed_per_second = options.events / (done - sent.started)
        figures.acknowledged_per_second = sent.acknowledged_per_second
        if latency_count:
            offered_sent = asyncio.run(
                _latency(deployment, watcher, offered, options.rate, len(payables))
            )
            _refused(system, offered_sent)
            _latency_figures(figures, offered_sent, options.rate)
        problems = watcher.problems(payables, "evt_bench_")
        if problems:
            raise RuntimeError(f"{system}: wrong end state: {'; '.join(problems[:5])}")
        peaks = deployment.peak_rss_mib()
        figures.server_peak_rss_mib = peaks[0]
        figures.worker_peak_rss_mib = peaks[1:]
        spent = sum(deployment.cpu_seconds()) - cpu_before
        figures.cpu_ms_per_event = 1000 * spent / len(payables)
        figures.driver_cpu_seconds = _driver_cpu() - driver_before
        figures.load_average = os.getloadavg()[0]
    finally:
        deployment.stop()
        watcher.close()
    databases.drop(url)  # kept when the run failed, to look into
    return figures


def _latency_figures(figures: Figures, sent: load.Sent, rate: float) -> None:
    figures.latency_rate = rate
    figures.latency_events = len(sent.latencies)
    figures.latency_p50_ms = 1000 * load.percentile(sent.latencies, 0.50)
    figures.latency_p99_ms = 1000 * load.percentile(sent.latencies, 0.99)
    figures.latency_max_ms = 1000 * max(sent.latencies)
    figures.late_sends = sent.late_sends


def _median(runs: list[Figures], name: str) -> float:
    values = [getattr(figures, name) for figures in runs]
    if values and isinstance(values[0], list):
        values = [max(value) if value else 0.0 for value in values]
    return statistics.median(values) if values else float("nan")


ROWS = (
    ("processed events/s (first send to last order paid)", "processed_per_second"),
    ("acknowledged events/s (closed loop)", "acknowledged_per_second"),
    ("ack latency p50 (ms), open loop", "latency_p50_ms"),
    ("ack latency p99 (ms), open loop", "latency_p99_ms"),
    ("server peak RSS (MiB)", "server_peak_rss_mib"),
    ("largest worker peak RSS (MiB)", "worker_peak_rss_mib"),
    ("server+worker CPU per event (ms)", "cpu_ms_per_event"),
    ("machine load average, 1 min, at the end of a run", "load_average"),
)


def report(results: list[Figures], options: argparse.Namespace) -> str:
    """Tables of medians, one per backend, stored size and worker count."""
    lines = []
    groups = sorted({(f.backend, f.stored, f.workers) for f in results})
    for backend, stored, workers in groups:
        runs = {
            system: [
                f
                for f in results
                if (f.backend, f.stored, f.workers, f.system)
                == (backend, stored, workers, system)
            ]
            for system in options.systems
        }
        where = "worker in the server process" if not workers else f"{workers} workers"
        count = max(len(r) for r in runs.values())
        lines.append(
            f"\n{backend}, {stored:,} events stored before, {where}: "
            f"median of {count} runs, {options.events} events, "
            f"{options.concurrency} senders; latency at {options.rate:g}/s "
            f"for {options.latency_seconds:g} s"
        )
        lines.append(f"{'':52}" + "".join(f"{s:>12}" for s in options.systems))
        both = len(options.systems) == 2
        if both:
            lines[-1] += f"{'ratio':>8}"
        for label, name in ROWS:
            if name == "worker_peak_rss_mib" and not workers:
                continue
            medians = [_median(runs[s], name) for s in options.systems]
            line = f"{label:52}" + "".join(f"{m:12.1f}" for m in medians)
            if both and medians[1] and name != "load_average":
                line += f"{medians[0] / medians[1]:8.2f}"
            lines.append(line)
    if len(options.stored) > 1:
        lines.append(_growth(results, options))
    return "\n".join(lines)


def _growth(results: list[Figures], options: argparse.Namespace) -> str:
    lines = ["\nthroughput and memory as stored events grow (vs the smallest):"]
    for system in options.systems:
        for workers in sorted({f.workers for f in results}):
            base_rate = base_rss = None
            for stored in options.stored:
                runs = [
                    f
                    for f in results
                    if (f.system, f.stored, f.workers) == (system, stored, workers)
                ]
                rate = _median(runs, "processed_per_second")
                rss = _median(runs, "server_peak_rss_mib")
                base_rate = base_rate or rate
                base_rss = base_rss or rss
                lines.append(
                    f"  {system:10} {stored:>10,} stored: {rate:7.1f} events/s "
                    f"({100 * (rate / base_rate - 1):+5.1f}%), "
                    f"peak RSS {rss:6.1f} MiB ({100 * (rss / base_rss - 1):+5.1f}%)"
                )
    return "\n".join(lines)


def long_run(system: str, databases: Databases, options: argparse.Namespace) -> str:
    """Offer events at a steady rate for a long time, sampling the server's memory."""
    count = int(options.long * options.long_rate)
    url = databases.create(f"{system}-long", options.stored[0])
    engine = db.create_db_engine(url)
    payables = add_payables(engine, count, prefix="pi_long_")
    engine.dispose()
    watcher = Watcher(url, payables[0].order_id, payables[-1].order_id)
    deployment = start(system, url, options.workers[0], options.workdir)
    samples: list[tuple[float, float, int, int]] = []

    async def sample(since: float, stop: asyncio.Event) -> None:
        while True:
            rss = deployment.rss_mib()[0]
            paid = await asyncio.to_thread(watcher.paid)
            backlog = await asyncio.to_thread(watcher.pending_events)
            samples.append((time.monotonic() - since, rss, paid, backlog))
            if stop.is_set():
                return
            try:
                await asyncio.wait_for(stop.wait(), options.sample_seconds)
            except TimeoutError:
                pass

    async def main() -> load.Sent:
        stop = asyncio.Event()
        sampler = asyncio.create_task(sample(time.monotonic(), stop))
        sent = await _latency(
            deployment, watcher, Events(payables, 0), options.long_rate, count
        )
        stop.set()
        await sampler
        return sent

    try:
        sent = asyncio.run(main())
        _refused(system, sent)
        peak = deployment.peak_rss_mib()[0]
    finally:
        deployment.stop()
        watcher.close()
    databases.drop(url)
    return _long_report(system, options, samples, sent, peak)


def _long_report(
    system: str,
    options: argparse.Namespace,
    samples: list[tuple[float, float, int, int]],
    sent: load.Sent,
    peak: float,
) -> str:
    lines = [
        f"\n{system}: {len(sent.latencies)} events offered at {options.long_rate:g}/s "
        f"for {options.long:g} s; ack p50 "
        f"{1000 * load.percentile(sent.latencies, 0.5):.1f} ms, p99 "
        f"{1000 * load.percentile(sent.latencies, 0.99):.1f} ms; "
        f"peak RSS {peak:.1f} MiB",
        f"{'seconds':>9} {'RSS MiB':>9} {'paid':>8} {'backlog':>8}",
    ]
    step = max(1, len(samples) // 20)
    shown = (
        samples[::step]
        if samples[-1] in samples[::step]
        else [
            *samples[::step],
            samples[-1],
        ]
    )
    for seconds, rss, paid, backlog in shown:
        lines.append(f"{seconds:9.0f} {rss:9.1f} {paid:8} {backlog:8}")
    # Measure growth after warm-up: imports, caches and pools fill the first minutes.
    warm, end = samples[len(samples) // 10][1], samples[-1][1]
    highest = max(sample[1] for sample in samples)
    lines.append(
        f"RSS after the first tenth of the run {warm:.1f} MiB, at the end {end:.1f} "
        f"MiB ({100 * (end / warm - 1):+.1f}%); highest {highest:.1f} MiB"
    )
    return "\n".join(lines)


def _numbers(text: str) -> list[int]:
    try:
        return [int(part.replace("_", "")) for part in text.split(",") if part]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected numbers separated by commas, got {text!r}"
        ) from None


def _systems(text: str) -> list[str]:
    chosen = [part for part in text.split(",") if part]
    unknown = sorted(set(chosen) - set(SYSTEMS))
    if unknown or not chosen:
        raise argparse.ArgumentTypeError(
            f"unknown system(s) {unknown}; choose from {', '.join(SYSTEMS)}"
        )
    return chosen


def parse(arguments: list[str]) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(
        prog="python -m tests.bench.payment_path",
        description=__doc__.splitlines()[0],
    )
    add = parser.add_argument
    add("--events", type=int, default=2000, help="events per throughput phase")
    add("--runs", type=int, default=3, help="runs per system; medians are printed")
    add("--concurrency", type=int, default=16, help="concurrent senders")
    add("--rate", type=float, default=300, help="offered events/s, latency phase")
    add("--latency-seconds", type=float, default=5, help="length of latency phase")
    add(
        "--stored",
        type=_numbers,
        default=[0],
        help="processed events stored before measuring, e.g. 1000,100000,1000000",
    )
    add("--postgres", metavar="URL", help="run on PostgreSQL (a schema per run)")
    add(
        "--workers",
        type=_numbers,
        default=None,
        help="worker processes on PostgreSQL (default 1,2,4)",
    )
    add("--systems", type=_systems, default=list(SYSTEMS), help="default: both")
    add("--long", type=float, metavar="SECONDS", help="long run: memory over time")
    add("--long-rate", type=float, default=100, help="offered events/s, long run")
    add("--sample-seconds", type=float, default=5, help="RSS sampling, long run")
    add("--profile", type=Path, metavar="DIR", help="one extra py-spy run per system")
    add(
        "--flows",
        choices=sorted(FLOW_SETS),
        default="payment",
        help="example flows loaded besides the system flows: payment (default: "
        "MarkOrderPaid, the extension of StripePaymentCallback) or examples (all)",
    )
    add("--workdir", type=Path, help="keep databases and logs here")
    add("--json", type=Path, metavar="FILE", help="write every run's figures")
    options = parser.parse_args(arguments)
    if options.workers is None:
        options.workers = [1, 2, 4] if options.postgres else [0]
    elif not options.postgres:
        parser.error("--workers needs --postgres; on SQLite the worker is in-process")
    if options.profile and options.profile.exists() and not options.profile.is_dir():
        parser.error(f"--profile {options.profile} is a file; give a folder")
    if options.postgres and 0 in options.workers:
        parser.error("--workers on PostgreSQL counts worker processes, at least 1")
    return options


def main(arguments: list[str] | None = None) -> None:
    """Run the benchmark the command line asks for and print its figures."""
    options = parse(sys.argv[1:] if arguments is None else arguments)
    with tempfile.TemporaryDirectory(prefix="actionflow-bench-") as scratch:
        options.workdir = options.workdir or Path(scratch)
        options.workdir.mkdir(parents=True, exist_ok=True)
        flows = flow_folder(options.workdir, options.flows)
        # actionflow reads actionflow.yaml from the folder its processes start in.
        (options.workdir / "actionflow.yaml").write_text(f"flows:\n  - {flows}\n")
        databases = Databases(options.workdir, options.postgres, flows)
        print(_machine(options), flush=True)
        try:
            _run(options, databases)
        finally:
            databases.close()


def _run(options: argparse.Namespace, databases: Databases) -> None:
    if options.long:
        for system in options.systems:
            print(long_run(system, databases, options), flush=True)
        return
    results: list[Figures] = []
    for stored in options.stored:
        for workers in options.workers:
            for run in range(1, options.runs + 1):
                for system in options.systems:
                    figures = measure(system, databases, options, stored, workers, run)
                    results.append(figures)
                    print(_progress(figures, run), file=sys.stderr, flush=True)
    print(report(results, options), flush=True)
    if options.json:
        options.json.write_text(json.dumps([asdict(f) for f in results], indent=2))
    if options.profile:
        options.profile.mkdir(parents=True, exist_ok=True)
        for system in options.systems:
            raw = options.profile / f"{system}.txt"
            stored, workers = options.stored[0], options.workers[0]
            figures = measure(
                system, databases, options, stored, workers, 0, profile_to=raw
            )
            print(
                f"\nprofile of {system}'s server during the throughput phase "
                f"({figures.processed_per_second:.1f} events/s while sampled; "
                f"recording in {raw}):\n{summarise(raw)}",
                flush=True,
            )


def _machine(options: argparse.Namespace) -> str:
    cpu = "unknown CPU"
    with open("/proc/cpuinfo", encoding="utf-8") as info:
        for line in info:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    one, five, fifteen = os.getloadavg()
    return (
        f"machine: {os.cpu_count()} cores ({cpu}), Python {sys.version.split()[0]}; "
        f"load average {one:.2f} {five:.2f} {fifteen:.2f} before the runs; "
        f"flows: system + {options.flows}"
    )


def _progress(figures: Figures, run: int) -> str:
    return (
        f"run {run} {figures.system} stored={figures.stored} "
        f"workers={figures.workers}: "
        f"{figures.processed_per_second:.1f} processed/s, "
        f"{figures.acknowledged_per_second:.1f} acked/s, latency p50 "
        f"{figures.latency_p50_ms:.1f} ms p99 {figures.latency_p99_ms:.1f} ms, "
        f"peak RSS {figures.server_peak_rss_mib:.1f} MiB, "
        f"{figures.cpu_ms_per_event:.2f} CPU ms/event, "
        f"driver CPU {figures.driver_cpu_seconds:.1f} s, "
        f"load average {figures.load_average:.2f}"
    )


if __name__ == "__main__":
    main()
