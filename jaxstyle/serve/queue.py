"""The studio's queue and its worker: jobs kept in ``<folder>/.studio/queue.json``, run one at a
time, each in its own command-line process (``python -m jaxstyle.cli --config ... --serve PORT``),
so a studio run is exactly a command-line run, and stopping one is the command line's clean
interrupt (SIGINT: the chunk finishes, a checkpoint is written)."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import socket
import sys
import time
from pathlib import Path
from typing import Any

from ..core.errors import ERROR_PREFIX, EXIT_INTERRUPTED, JaxstyleError
from ..engine.checkpoint import FILENAME as CHECKPOINT

#: The studio's own folder inside its folder of runs.
STATE_DIR = ".studio"
JOB_STATES = ("waiting", "running", "finished", "interrupted", "failed")
RUN_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,120}$")


class StudioError(JaxstyleError):
    """A request the studio refuses, in one line for the page."""


def valid_job(job: Any) -> bool:
    """Whether a queue file's entry has the shape the studio writes."""
    return (isinstance(job, dict) and isinstance(job.get("name"), str) and RUN_NAME.match(job["name"]) is not None
            and job["name"] != STATE_DIR and job.get("state") in JOB_STATES
            and isinstance(job.get("message", ""), str) and isinstance(job.get("resume", False), bool)
            and all(isinstance(job.get(k, 0.0), (int, float)) for k in ("submitted", "started")))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RunQueue:
    """The jobs of a studio's folder and the worker that runs them. Used from the server's event
    loop only."""

    def __init__(self, folder: Path, state_dir: Path, python: str = sys.executable):
        self.folder, self.state_dir, self.python = folder, state_dir, python
        self.jobs_dir = state_dir / "jobs"
        self.queue_file = state_dir / "queue.json"
        self.jobs: list[dict] = self._load()
        self.process: asyncio.subprocess.Process | None = None
        self.watch_port: int | None = None
        self.wake = asyncio.Event()
        self.closing = False

    def _load(self) -> list[dict]:
        """The queue file's jobs. One that cannot be read (not JSON, or not a list of jobs) is moved
        aside with one warning line, never read as empty and overwritten."""
        try:
            text = self.queue_file.read_text()
        except FileNotFoundError:
            return []
        except (OSError, UnicodeDecodeError) as exc:
            return self._set_aside(f"cannot be read ({getattr(exc, 'strerror', None) or exc})")
        try:
            jobs = json.loads(text)
        except (ValueError, RecursionError):
            return self._set_aside("is not JSON")
        if not isinstance(jobs, list) or not all(valid_job(j) for j in jobs):
            return self._set_aside("is not a list of the studio's jobs")
        for job in jobs:
            if job.get("state") == "running":  # the studio stopped while it ran
                job["state"] = "interrupted" if (self.folder / job["name"] / CHECKPOINT).exists() else "failed"
                job["message"] = "the studio stopped while this run was going"
        return jobs

    def _set_aside(self, why: str) -> list[dict]:
        aside = self.queue_file.with_name(f"queue.unreadable-{time.strftime('%Y%m%d-%H%M%S')}.json")
        os.replace(self.queue_file, aside)
        print(f"warning: {self.queue_file} {why}; moved to {aside.name}, starting with an empty queue",
              file=sys.stderr, flush=True)
        return []

    def save(self) -> None:
        tmp = self.queue_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.jobs, indent=1))
        os.replace(tmp, self.queue_file)

    def job(self, name: str) -> dict | None:
        return next((j for j in self.jobs if j["name"] == name), None)

    def waiting(self) -> int:
        return sum(j["state"] == "waiting" for j in self.jobs)

    def add(self, job: dict) -> None:
        """Queue ``job`` (or, already listed, save its new state) and wake the worker."""
        if job not in self.jobs:
            self.jobs.append(job)
        self.save()
        self.wake.set()

    def drop(self, job: dict) -> None:
        self.jobs.remove(job)
        self.save()

    def stop(self, name: str) -> None:
        """Interrupt the running job ``name`` once, as Ctrl-C does (its checkpoint is written)."""
        job = self.job(name)
        if job is None or job["state"] != "running" or self.process is None:
            raise StudioError(f"{name} is not running")
        if job.get("stopping"):  # a second interrupt would stop the run at once, saving nothing
            raise StudioError(f"{name} is already stopping")
        job["stopping"] = True
        self.process.send_signal(signal.SIGINT)  # the command line's clean interrupt

    async def worker(self) -> None:
        """Run the queue, one job at a time, each in its own command-line process."""
        while not self.closing:
            job = next((j for j in self.jobs if j["state"] == "waiting"), None)
            if job is None:
                self.wake.clear()
                await self.wake.wait()
                continue
            await self.run_job(job)

    async def run_job(self, job: dict) -> None:
        name = job["name"]
        self.watch_port = free_port()
        args = [self.python, "-m", "jaxstyle.cli", "--config", str(self.jobs_dir / f"{name}.yaml"),
                "--serve", str(self.watch_port), "--serve-exit"] + (["--resume"] if job.get("resume") else [])
        log = self.state_dir / "logs" / f"{name}.log"
        log.parent.mkdir(exist_ok=True)
        job.update(state="running", started=time.time(), message="")
        job.pop("stopping", None)
        self.save()
        with open(log, "ab") as out:
            # Its own session: a Ctrl-C on the studio's terminal reaches the studio only, which then
            # interrupts the run once (a second interrupt would stop it without a checkpoint).
            self.process = await asyncio.create_subprocess_exec(*args, stdout=out, stderr=out,
                                                                stdin=asyncio.subprocess.DEVNULL,
                                                                start_new_session=True)
            code = await self.process.wait()
        self.process, self.watch_port = None, None
        errors = [line for line in log.read_text(errors="replace").splitlines() if line.startswith(ERROR_PREFIX)]
        if code == 0:
            job.update(state="finished", message="")
        elif code == EXIT_INTERRUPTED:
            job.update(state="interrupted", message="stopped: a checkpoint was written; resume continues it")
        else:
            message = errors[-1][len(ERROR_PREFIX):] if errors else f"the run ended with status {code}"
            job.update(state="failed", message=message)
        job.pop("stopping", None)
        self.save()

    async def shutdown(self) -> None:
        """Start no more jobs, and stop a running one cleanly (its checkpoint written)."""
        self.closing = True
        self.wake.set()
        process, job = self.process, next((j for j in self.jobs if j["state"] == "running"), None)
        if process is not None and process.returncode is None:
            if not (job or {}).get("stopping"):
                process.send_signal(signal.SIGINT)
            try:
                await asyncio.wait_for(process.wait(), 300)
            except asyncio.TimeoutError:
                process.kill()
