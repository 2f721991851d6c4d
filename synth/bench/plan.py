"""What one bench invocation measures: the plan, its targets and configurations, and the machine.

:func:`make_plan` turns the CLI flags into a :class:`BenchPlan`; the constants below are the
choices it draws on (suites, proposer configurations, the ``--quick`` subset). The machine,
library versions and git commit recorded next to every result are read here too.
"""

from __future__ import annotations

import os
import platform
import resource
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

SUITES = ("recovery", "controls", "perf")
BUDGET_ENV = "MECHSYNTH_BENCH_BUDGET_SECONDS"
# Run stores, peer exports and control runs go here under --out, apart from the two reports,
# so `--out .` at the repo root leaves BENCHMARKS.md and bench.json next to the README.
WORK_DIR = "bench-work"

# Proposer configurations, in table order (synth.bench.modes builds each). "llm_only" and
# "both" need an LLM endpoint.
MODE_LABELS = {
    "io_only": "(a) I/O-only enumeration",
    "model_guided": "(b) model-guided",
    "llm_only": "(c) LLM only",
    "both": "(d) model-guided + LLM",
    "exact_walk": "(e) exact single-round walk + enumeration (no scored/anytime search)",
    "engine": "(f) default engine (model-guided search, DAS, enumeration)",
}
LLM_MODES = ("llm_only", "both")
# What each suite runs when --modes does not say: recovery compares proposers, the
# false-positive suite runs the shipped engine.
RECOVERY_MODES = ("io_only", "model_guided")
CONTROL_MODES = ("engine",)
TARGET_GROUPS = ("tracr", "trained")  # --targets accepts these for every target of that kind

# The quick subset: targets that exercise every ground-truth shape the engine handles
# (a select/aggregate pair, selector_width, a numerical mean, an MLP map feeding a head),
# plus one trained network. Chosen for coverage, not for being easy.
QUICK_TRACR = ("tracr:reverse", "tracr:hist", "tracr:frac_prevs", "tracr:sort_unique")
# The first of these whose checkpoint loads here is the quick subset's trained target.
QUICK_TRAINED = ("trained:reverse", "trained:sort", "trained:hist", "trained:induction")


class BenchError(RuntimeError):
    """The benchmark could not run or its results fall below the committed baseline."""


# --- plan ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BenchPlan:
    """What one bench invocation measures. Built from the CLI flags by :func:`make_plan`."""

    suites: tuple[str, ...]
    quick: bool
    targets: tuple[str, ...]
    modes: tuple[str, ...]
    budget_seconds: float
    control_seeds: tuple[int, ...]
    control_targets: tuple[str, ...]
    control_budget_seconds: float
    perf_batch: int
    depths: tuple[int, ...] = (1, 2, 4)
    program_sizes: tuple[int, ...] = (1, 2, 4, 8, 16)
    with_acdc: bool = False
    seed: int = 0
    jobs: int = 1  # runs of a suite at once (the executor's workers)
    device: str = "cpu"  # where every network of the bench runs (a resolved torch device name)
    executor: str = "inline"  # the executor back end: inline, processes or ray (synth.bench.executor)
    ray_address: str | None = None  # join this Ray cluster (None: start a local one when executor is ray)
    control_modes: tuple[str, ...] = CONTROL_MODES  # engine configurations of the false-positive suite

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def llm_configured(env: Mapping[str, str] | None = None) -> bool:
    """Whether an LLM endpoint is configured (a key or a base URL), as the loop reads it."""
    env = os.environ if env is None else env
    return bool(env.get("ANTHROPIC_API_KEY") or env.get("ANTHROPIC_BASE_URL"))


def available_targets() -> tuple[list[str], list[str]]:
    """(tracr specs, trained specs) known here, without building any network."""
    try:
        from mechsynth.models.registry import known_specs

        names = list(known_specs())
    except ImportError:  # an older models package: fall back to the (slower) full table
        from mechsynth.models import list_targets

        names = [str(getattr(r, "name", None) or dict(r)["name"]) for r in list_targets()]
    tracr = [n for n in names if n.startswith("tracr:")]
    trained = [n for n in names if n.startswith("trained:")]
    return tracr, trained


def _first_loadable(specs: list[str], *, check: bool) -> list[str]:
    """The first spec that loads (a checkpoint may not be trained yet), as a 0/1-item list."""
    if not check:
        return specs[:1]
    from mechsynth.models import load_target

    for spec in specs:
        try:
            load_target(spec)
        except Exception:  # noqa: BLE001 - any failure to load means "not available here"
            continue
        return [spec]
    return []


def _budget_from_env() -> float | None:
    """``MECHSYNTH_BENCH_BUDGET_SECONDS`` as seconds, or None when it is unset or empty."""
    if not os.environ.get(BUDGET_ENV):
        return None
    try:
        return float(os.environ[BUDGET_ENV])
    except ValueError:
        raise BenchError(
            f"{BUDGET_ENV} must be a number of seconds, got {os.environ[BUDGET_ENV]!r}"
        ) from None


def _chosen_targets(quick: bool, targets: tuple[list[str], list[str]] | None) -> list[str]:
    """Every known target, or the quick subset (with the first trained target that loads)."""
    tracr, trained = targets if targets is not None else available_targets()
    if not quick:
        return tracr + trained
    return [t for t in QUICK_TRACR if t in tracr] + _first_loadable(
        [t for t in QUICK_TRAINED if t in trained], check=targets is None
    )


def select_targets(names: str, targets: tuple[list[str], list[str]] | None = None) -> list[str]:
    """``--targets``: comma-separated target specs or groups (``tracr``, ``trained``), in that order.

    Each known spec at most once; an unknown name is a BenchError that lists the groups.
    """
    tracr, trained = targets if targets is not None else available_targets()
    known = tracr + trained
    chosen: list[str] = []
    for name in (n.strip() for n in names.split(",")):
        if not name:
            continue
        if name in TARGET_GROUPS:
            group = tracr if name == "tracr" else trained
        elif name in known:
            group = [name]
        else:
            raise BenchError(f"unknown target {name!r} in --targets (a spec from `mechsynth targets`, "
                             f"or one of: {', '.join(TARGET_GROUPS)})")
        chosen += [t for t in group if t not in chosen]
    if not chosen:
        raise BenchError("--targets names no target")
    return chosen


def select_modes(names: str, llm: bool) -> tuple[str, ...]:
    """``--modes``: comma-separated configuration names of ``MODE_LABELS`` (LLM ones need an endpoint)."""
    modes = tuple(dict.fromkeys(n.strip() for n in names.split(",") if n.strip()))
    for mode in modes:
        if mode not in MODE_LABELS:
            raise BenchError(f"unknown configuration {mode!r} in --modes (known: {', '.join(MODE_LABELS)})")
        if mode in LLM_MODES and not llm:
            raise BenchError(f"--modes {mode} needs an LLM endpoint "
                             "(ANTHROPIC_API_KEY or ANTHROPIC_BASE_URL)")
    if not modes:
        raise BenchError("--modes names no configuration")
    return modes


def select_seeds(text: str) -> tuple[int, ...]:
    """``--seeds``: comma-separated integers >= 0 (the false-positive suite's copies)."""
    try:
        seeds = tuple(dict.fromkeys(int(x) for x in text.split(",") if x.strip()))
    except ValueError:
        raise BenchError(f"--seeds must be comma-separated integers, got {text!r}") from None
    if not seeds or min(seeds) < 0:
        raise BenchError(f"--seeds must name integers >= 0, got {text!r}")
    return seeds


def make_plan(
    suite: str,
    quick: bool,
    *,
    with_acdc: bool = False,
    llm: bool | None = None,
    targets: tuple[list[str], list[str]] | None = None,
    budget: float | None = None,
    jobs: int = 1,
    device: str = "cpu",
    executor: str | None = None,
    ray_address: str | None = None,
    target_names: str | None = None,
    mode_names: str | None = None,
    seed_names: str | None = None,
) -> BenchPlan:
    """The plan for one invocation. ``budget`` (seconds per synthesis run) defaults to the
    issue's bar (5 minutes per target) for the full suite and 30 s for --quick; the
    environment variable ``MECHSYNTH_BENCH_BUDGET_SECONDS`` overrides it (recorded in the plan).
    ``target_names``/``mode_names``/``seed_names`` are ``--targets``/``--modes``/``--seeds``
    (:func:`select_targets`, :func:`select_modes`, :func:`select_seeds`): they replace the
    default targets (of every suite), configurations (of the recovery and false-positive
    suites) and the false-positive suite's copy seeds.
    """
    if budget is None:
        budget = _budget_from_env()
    suites = SUITES if suite == "all" else (suite,)
    unknown = [s for s in suites if s not in SUITES]
    if unknown:
        raise BenchError(f"unknown suite {unknown[0]!r} (known: {', '.join(SUITES)}, all)")
    has_llm = llm if llm is not None else llm_configured()
    if target_names is not None:
        chosen = select_targets(target_names, targets)
        control_targets = list(chosen)
    else:
        chosen = _chosen_targets(quick, targets)
        control_targets = chosen[:1] if quick else chosen
    if mode_names is not None:
        modes = list(select_modes(mode_names, has_llm))
        control_modes = tuple(modes)
    else:
        modes = list(RECOVERY_MODES) + (list(LLM_MODES) if has_llm else [])
        control_modes = CONTROL_MODES
    control_budget = 15.0 if quick else 120.0
    return BenchPlan(
        suites=tuple(suites),
        quick=quick,
        targets=tuple(chosen),
        modes=tuple(modes),
        budget_seconds=budget if budget is not None else (30.0 if quick else 300.0),
        control_seeds=select_seeds(seed_names) if seed_names is not None else ((0,) if quick else (0, 1, 2)),
        control_targets=tuple(control_targets),
        control_budget_seconds=min(budget, control_budget) if budget is not None else control_budget,
        perf_batch=1024 if quick else 4096,
        program_sizes=(1, 2, 4, 8) if quick else (1, 2, 4, 8, 16),  # units of 3 nodes
        with_acdc=with_acdc,
        jobs=jobs,
        device=device,
        executor=executor or ("processes" if jobs > 1 else "inline"),
        ray_address=ray_address,
        control_modes=control_modes,
    )


# --- machine, versions, memory ------------------------------------------------------------------


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far (Linux reports KiB, macOS bytes)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


def current_rss_mb() -> float:
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / (1024 * 1024)
    except (OSError, ValueError, IndexError):
        return peak_rss_mb()


def machine_info() -> dict[str, Any]:
    import torch

    info: dict[str, Any] = {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "load_average_at_start": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
    }
    try:
        meminfo = Path("/proc/meminfo").read_text().splitlines()
        total_kb = next(int(line.split()[1]) for line in meminfo if line.startswith("MemTotal"))
        info["memory_gb"] = round(total_kb / 1024 / 1024, 1)
    except (OSError, StopIteration, ValueError):
        info["memory_gb"] = None
    return info


def versions() -> dict[str, str | None]:
    from importlib import metadata

    out: dict[str, str | None] = {"python": platform.python_version()}
    for dist in ("torch", "transformer_lens", "tracr-pypi", "mechsynth", "z3-solver", "anthropic"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = None
    return out


def git_info(repo: Path | None = None) -> dict[str, Any]:
    repo = repo or Path(__file__).resolve().parents[2]

    def git(*args: str) -> str | None:
        try:
            proc = subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.SubprocessError):
            return None
        return proc.stdout.strip() if proc.returncode == 0 else None

    status = git("status", "--porcelain", "--untracked-files=no")
    return {"commit": git("rev-parse", "HEAD"), "dirty": bool(status) if status is not None else None}
