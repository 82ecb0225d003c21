"""Plumbing shared by the workflow's scripts: logging to the rule's log, threads, seeds, device."""

from __future__ import annotations

import contextlib
import logging
import os
import random
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .device import select_device
from .plugins import load_plugins

log = logging.getLogger("tokencert")


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU and CUDA) from one integer."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def use_threads(threads: int) -> None:
    """Run torch on ``threads`` threads, their OpenMP workers sleeping when idle rather than spinning
    (``OMP_WAIT_POLICY=PASSIVE``: a 2-thread Square job beside a busy core took 22.2 s with it, 34.3 s
    without). OpenMP reads the variable when torch loads, so with more than one thread and the
    variable unset the process re-executes itself with it (the benchmarks' entry; the workflow's jobs
    inherit it from the Snakefile)."""
    if threads > 1 and "OMP_WAIT_POLICY" not in os.environ:
        os.execve(sys.executable, [sys.executable, *sys.argv], {**os.environ, "OMP_WAIT_POLICY": "PASSIVE"})
    torch.set_num_threads(threads)


def derive_seed(seed: int, *keys: object) -> int:
    """A stable per-job seed from the study seed and job keys (independent of PYTHONHASHSEED)."""
    import hashlib

    text = "/".join([str(seed), *map(str, keys)])
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:4], "little")


@dataclass
class JobContext:
    """What a rule's script needs besides its inputs: device, seed, thread count."""

    device: torch.device
    seed: int
    threads: int


def _process(pid: int) -> tuple[list[str], str, int, str] | None:
    """(argv, state, parent pid, start time) of a live process from Linux's /proc, or None."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2:].split()  # after "pid (name) ": state, ppid, ... starttime (20th)
    return argv, fields[0], int(fields[1]), fields[19]


def snakemake_ancestor() -> tuple[int, str] | None:
    """(pid, start time) of the nearest ancestor process running Snakemake, or None (none, or no /proc)."""
    pid = os.getppid()
    while pid > 1 and (info := _process(pid)) is not None:
        argv, _, parent, start = info
        if any(Path(arg).name == "snakemake" for arg in argv[:3]):
            return pid, start
        pid = parent
    return None


def watch_snakemake(interval: float = 1.0) -> threading.Thread | None:
    """End this job (exit code 1) within ``interval`` seconds of its Snakemake's death (``kill -9``
    included), so that a rerun never races an orphan writing the same files."""
    found = snakemake_ancestor()
    if found is None:
        return None
    pid, start = found

    def watch() -> None:
        while True:
            time.sleep(interval)
            info = _process(pid)
            if info is None or info[1] in "ZX" or info[3] != start:  # gone, a zombie, or its pid reused
                log.error("Snakemake (pid %d) is gone: stopping this job", pid)
                os._exit(1)

    thread = threading.Thread(target=watch, name="watch-snakemake", daemon=True)
    thread.start()
    return thread


@contextlib.contextmanager
def job(smk: Any, *seed_keys: object) -> Iterator[JobContext]:
    """Run a Snakemake script body: output to the rule's log, seeded, on the right device.

    ``smk`` is the ``snakemake`` object of a ``script:`` directive. stdout, stderr and
    the ``tokencert`` logger go to ``smk.log[0]`` when the rule declares a log. An error is
    logged with its traceback (in the log) and ends the job with exit code 1 and one line on
    the console naming the rule, the error and the log (no traceback there).
    """
    log_path = smk.log[0] if len(smk.log) else None
    stream = open(log_path, "w", buffering=1, encoding="utf-8") if log_path else None
    failure: Exception | None = None
    with contextlib.ExitStack() as stack:
        if stream is not None:
            stack.enter_context(stream)
            stack.enter_context(contextlib.redirect_stdout(stream))
            stack.enter_context(contextlib.redirect_stderr(stream))
        handler = logging.StreamHandler(stream or sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        log.addHandler(handler)
        log.setLevel(logging.INFO)
        try:
            watch_snakemake()
            load_plugins(smk.config)  # what a researcher's modules register exists in every job
            threads = int(getattr(smk, "threads", 1) or 1)
            torch.set_num_threads(max(1, threads))
            seed = derive_seed(int(smk.config.get("seed", 0)), smk.rule, *seed_keys)
            seed_everything(seed)
            gpus = int(getattr(smk.resources, "gpu", 0) or 0)
            device = select_device(gpus, smk.config.get("device", "auto"))
            log.info("rule %s: device=%s threads=%d (OMP_WAIT_POLICY=%s) seed=%d", smk.rule, device, threads,
                     os.environ.get("OMP_WAIT_POLICY", "unset"), seed)
            yield JobContext(device=device, seed=seed, threads=threads)
        except Exception as exc:
            log.exception("%s: %s", type(exc).__name__, exc)
            if stream is None:
                raise
            failure = exc
        finally:
            log.removeHandler(handler)
    if failure is not None:
        message = " ".join(str(failure).split())  # one line, whatever the error's text
        raise SystemExit(f"rule {smk.rule}: {type(failure).__name__}: {message} (details: {log_path})")
