"""The executor: where the bench's independent pieces of work run, on one machine or many.

A suite is many independent runs (every target x copy x seed of the false-positive suite,
every target x proposer configuration of the recovery suite, every point of a perf
sweep). Each is a `Job`: an importable function named ``"module:function"`` and its
arguments, so that any worker process on any machine can run it. An executor takes a
list of jobs and returns their results *in submission order*, calling ``on_result`` as
each one finishes, so a suite can store each run's outcome at once and a rerun after an
interruption reuses what was stored, whichever back end ran it.

Back ends (`Backend`):

* ``inline``: one after another in this process (the reference; custom callables allowed);
* ``processes``: a pool of fresh interpreters on this machine (``spawn``: torch does not
  survive ``fork``);
* ``ray``: tasks on a Ray cluster, either a local one started here
  (``ray.init(num_cpus=workers)``, with ``RAY_AUTH_MODE=disabled`` for a cluster nobody
  else can reach) or an existing one joined by address (``--ray-address``), which is how
  a suite grows past one machine. Ray is an optional dependency (``pip install
  'mechsynth[ray]'``).

Results do not depend on the back end: a job carries its own seeds and device, the
executor draws nothing, and a job's function is the same code everywhere.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from mechsynth.synth.bench.plan import BenchError


class Backend(StrEnum):
    """Where jobs run."""

    INLINE = "inline"
    PROCESSES = "processes"
    RAY = "ray"


@dataclass(frozen=True)
class Job:
    """One unit of work: ``fn`` (``"package.module:function"``) called with ``args`` and ``kwargs``.

    Arguments must be picklable (strings, numbers, dataclasses of them); the function is
    imported by name in the worker, so it must be importable there.
    """

    fn: str
    args: tuple = ()
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    name: str = ""


OnResult = Callable[[int, Any], None]


def call(fn: str, args: tuple, kwargs: Mapping[str, Any]) -> Any:
    """Run a job's function by name (what every worker executes)."""
    module, _, name = fn.partition(":")
    if not module or not name:
        raise BenchError(f"a job's function must be 'module:function', got {fn!r}")
    return getattr(importlib.import_module(module), name)(*args, **dict(kwargs))


class Executor:
    """Runs jobs; `map` returns results in submission order. Use as a context manager."""

    backend: Backend = Backend.INLINE

    def __init__(self, workers: int = 1) -> None:
        if workers < 1:
            raise BenchError(f"workers must be >= 1, got {workers}")
        self.workers = workers

    def map(self, jobs: Sequence[Job], on_result: OnResult | None = None) -> list[Any]:
        results: list[Any] = [None] * len(jobs)
        for i, job in enumerate(jobs):
            results[i] = call(job.fn, job.args, job.kwargs)
            if on_result is not None:
                on_result(i, results[i])
        return results

    def describe(self) -> str:
        return f"{self.backend.value} x{self.workers}"

    def close(self) -> None:
        """Release the workers (nothing to release inline)."""

    def __enter__(self) -> Executor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class InlineExecutor(Executor):
    """In this process, one job after another (``workers`` is 1)."""

    def __init__(self, workers: int = 1) -> None:
        super().__init__(1)


class ProcessExecutor(Executor):
    """A pool of ``workers`` spawned interpreters on this machine, kept from one `map` to the
    next until `close` (so a warm-up map pays the workers' start-up once)."""

    backend = Backend.PROCESSES

    def __init__(self, workers: int = 1) -> None:
        super().__init__(workers)
        self._pool: Any = None

    def map(self, jobs: Sequence[Job], on_result: OnResult | None = None) -> list[Any]:
        import concurrent.futures
        import multiprocessing

        results: list[Any] = [None] * len(jobs)
        if not jobs:
            return results
        if self._pool is None:
            ctx = multiprocessing.get_context("spawn")  # a fresh interpreter: torch does not survive fork
            self._pool = concurrent.futures.ProcessPoolExecutor(max_workers=self.workers, mp_context=ctx)
        submit = self._pool.submit
        futures = {submit(call, job.fn, job.args, dict(job.kwargs)): i for i, job in enumerate(jobs)}
        for future in concurrent.futures.as_completed(futures):
            i = futures[future]
            results[i] = future.result()
            if on_result is not None:
                on_result(i, results[i])
        return results

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(cancel_futures=True)
            self._pool = None


RAY_MISSING = "the Ray back end needs ray: pip install 'mechsynth[ray]' (or pip install 'ray>=2.40')"


def _ray() -> Any:
    try:
        import ray
    except ImportError:
        raise BenchError(RAY_MISSING) from None
    return ray


class RayExecutor(Executor):
    """Ray tasks, one CPU each: on a local cluster of ``workers`` CPUs started here, or on the
    cluster at ``address`` (its size is the cluster's; ``workers`` is then what we report)."""

    backend = Backend.RAY

    def __init__(self, workers: int = 1, address: str | None = None) -> None:
        super().__init__(workers)
        ray = _ray()
        self.address = address
        self._started = False
        if not ray.is_initialized():
            if address is None:
                os.environ.setdefault("RAY_AUTH_MODE", "disabled")  # a local cluster nobody else reaches
                ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False,
                         logging_level="ERROR", configure_logging=True)
            else:
                try:
                    ray.init(address=address, log_to_driver=False, logging_level="ERROR")
                except (ConnectionError, RuntimeError, ValueError) as e:
                    why = str(e).splitlines()[0] if str(e) else type(e).__name__
                    raise BenchError(f"cannot join the Ray cluster at {address}: {why}") from None
            self._started = True
        self._remote = ray.remote(num_cpus=1, max_retries=0)(call)

    def map(self, jobs: Sequence[Job], on_result: OnResult | None = None) -> list[Any]:
        ray = _ray()
        results: list[Any] = [None] * len(jobs)
        pending = {self._remote.remote(job.fn, job.args, dict(job.kwargs)): i for i, job in enumerate(jobs)}
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1)
            for ref in done:
                i = pending.pop(ref)
                results[i] = ray.get(ref)
                if on_result is not None:
                    on_result(i, results[i])
        return results

    def describe(self) -> str:
        where = f"cluster at {self.address}" if self.address else "local cluster"
        return f"ray x{self.workers} ({where})"

    def close(self) -> None:
        if self._started:
            _ray().shutdown()
            self._started = False


def make_executor(
    backend: str | Backend = Backend.INLINE, workers: int = 1, address: str | None = None
) -> Executor:
    """The executor for a back end name (BenchError, one line, for an unknown one or missing ray)."""
    try:
        kind = Backend(str(backend))
    except ValueError:
        known = ", ".join(b.value for b in Backend)
        raise BenchError(f"unknown executor back end {backend!r} (known: {known})") from None
    if address is not None and kind is not Backend.RAY:
        raise BenchError("--ray-address needs the Ray back end")
    if kind is Backend.RAY:
        return RayExecutor(workers, address)
    if kind is Backend.PROCESSES:
        return ProcessExecutor(workers)
    return InlineExecutor(workers)


def plan_executor(plan: Any) -> Executor:
    """The executor a bench plan asks for (``plan.executor``, ``plan.jobs``, ``plan.ray_address``)."""
    return make_executor(getattr(plan, "executor", "inline"), int(getattr(plan, "jobs", 1)),
                         getattr(plan, "ray_address", None))
