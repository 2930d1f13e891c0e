"""The worker loop: process stored events and pending runs until told to stop.

It runs in a thread inside `serve`, or alone in `actionflow worker`. Stopping
lets the run in progress finish and commit; nothing claimed is dropped, since a
claim only lasts as long as its transaction.
"""

from __future__ import annotations

import logging
import threading

from actionflow.engine.inbox import Processor
from actionflow.engine.outbox import Sender

log = logging.getLogger("actionflow.worker")

IDLE_SECONDS = 0.5
ERROR_PAUSE_SECONDS = 2.0


class Worker:
    """Drains the inbox; `wake` cuts the idle wait short when an event arrives."""

    def __init__(
        self,
        processor: Processor,
        wake: threading.Event,
        sender: Sender | None = None,
    ) -> None:
        self.processor = processor
        self.sender = sender
        self.wake = wake
        self.stopping = threading.Event()
        self.thread: threading.Thread | None = None

    def start(self) -> None:
        """Run the loop in a background thread."""
        self.thread = threading.Thread(
            target=self.run, name="actionflow-worker", daemon=True
        )
        self.thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        """Ask the loop to stop after the current run, and wait for it."""
        self.stopping.set()
        self.wake.set()
        if self.thread is not None:
            self.thread.join(timeout)

    def run(self) -> None:
        """Process until stopped."""
        while not self.stopping.is_set():
            try:
                busy = self.step()
            except Exception:
                log.exception("worker step failed; retrying shortly")
                self.stopping.wait(ERROR_PAUSE_SECONDS)
                continue
            if not busy:
                self.wake.wait(IDLE_SECONDS)
                self.wake.clear()

    def step(self) -> bool:
        """Process due events (a batch), a pending run or an outbox message.

        False if nothing was due.
        """
        if self.processor.process_next_events():
            return True
        if self.processor.process_next_run():
            return True
        # Notifications go out after the events and runs that queued them.
        return self.sender is not None and self.sender.send_next()
