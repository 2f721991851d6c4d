"""The peer a user would pick instead: ACDC and edge attribution patching (auto-circuit).

Circuit-discovery tools such as ACDC (Conmy et al. 2023) and edge attribution
patching (EAP, Syed et al. 2023) answer a narrower question than mechsynth: *which
edges of the computational graph matter* for a metric, not *what program the network
computes there*. The benchmark runs them on the same tracr targets so the two can be
compared on the one thing both claim: which components (heads, MLPs) take part.

auto-circuit 1.0.1 needs transformer_lens 2.x (``HookedTransformer``), which cannot
share an environment with our transformer_lens 4.x, so the peer runs in its own
virtual environment, created once from the pinned recipe in
``shared/notes/peers.md`` and cached under ``~/.cache/mechsynth/acdc-venv``. The two
environments exchange plain files only:

1. here (TL 4.x) we export each target's weights as a TransformerLens-format state
   dict in an ``.npz`` (with the target's *real* unembedding, not auto-circuit's
   identity-shaped guess), its config, and clean/corrupt token batches;
2. ``synth/bench/acdc_worker.py`` (run by the venv's Python; it imports none of our
   packages) rebuilds a ``HookedTransformer``, runs ACDC and EAP and writes JSON;
3. here we map the kept edges to components and compare them with the locations our
   accepted hypothesis claims and with tracr's ground truth.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from collections.abc import Iterable, Mapping, Sequence

if TYPE_CHECKING:
    from mechsynth.models import Target

# The recipe from shared/notes/peers.md: the pins keep pip off NumPy 2 (TL 2.x caps it below 2)
# and `attrs` is imported by auto-circuit without being declared.
VENV_REQUIREMENTS: tuple[str, ...] = (
    "torch==2.13.0",
    "auto-circuit==1.0.1",
    "transformer_lens==2.16.1",
    "numpy<2",
    "datasets<4",
    "pyarrow<21",
    "transformers<5",
    "attrs",
)
WORKER = Path(__file__).with_name("acdc_worker.py")
_READY_MARKER = "mechsynth-ready.json"


class PeerError(RuntimeError):
    """The peer environment is missing or the peer run failed; the message is one line."""


def default_venv_dir() -> Path:
    """Where the peer venv is cached (``MECHSYNTH_ACDC_VENV`` overrides)."""
    env = os.environ.get("MECHSYNTH_ACDC_VENV")
    if env:
        return Path(env).expanduser()
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return cache / "mechsynth" / "acdc-venv"


def venv_python(venv: Path) -> Path:
    return venv / "bin" / "python"


@dataclass(frozen=True)
class VenvStatus:
    """Whether the peer venv is usable, and if not, one line saying why."""

    ready: bool
    path: Path
    message: str
    seconds: float = 0.0


def venv_ready(venv: Path) -> bool:
    return (venv / _READY_MARKER).is_file() and venv_python(venv).exists()


def ensure_venv(venv: Path | None = None, *, create: bool = True, log: Path | None = None) -> VenvStatus:
    """Return a ready peer venv, creating it (once, at low CPU priority) when asked.

    Creation needs PyPI; when it fails (no network, a pin that no longer resolves) the
    status says so in one line and the half-built venv is left for inspection but not
    marked ready, so the next call tries again.
    """
    venv = venv or default_venv_dir()
    if venv_ready(venv):
        return VenvStatus(True, venv, f"auto-circuit venv ready at {venv}")
    if not create:
        return VenvStatus(False, venv, f"auto-circuit venv missing at {venv}; run the bench with --with-acdc")
    try:
        return _create_venv(venv, log)
    except OSError as e:
        why = e.strerror or str(e)
        message = f"could not create the auto-circuit venv at {venv} ({why}); ACDC skipped"
        return VenvStatus(False, venv, message)


def _create_venv(venv: Path, log: Path | None) -> VenvStatus:
    start = time.perf_counter()
    venv.parent.mkdir(parents=True, exist_ok=True)
    log = log or venv.parent / "acdc-venv-install.log"
    steps = [
        [sys.executable, "-m", "venv", str(venv)],
        # nice: the install competes with nothing we measure, so keep it out of the way.
        # Few retries, short timeouts: without network this should fail in seconds, not hang.
        [
            "nice",
            "-n",
            "19",
            str(venv_python(venv)),
            "-m",
            "pip",
            "install",
            "--quiet",
            "--retries",
            "1",
            "--timeout",
            "30",
            *VENV_REQUIREMENTS,
        ],  # fmt: skip
    ]
    # This machine's global pip constraints cap packages for *our* environment; the
    # peer pins its own versions, so they must not apply there.
    env = {k: v for k, v in os.environ.items() if k != "PIP_CONSTRAINT"}
    env["PIP_CONSTRAINT"] = ""
    with open(log, "w") as fh:
        for cmd in steps:
            fh.write("$ " + " ".join(cmd) + "\n")
            fh.flush()
            proc = subprocess.run(cmd, stdout=fh, stderr=subprocess.STDOUT, env=env, check=False)
            if proc.returncode != 0:
                return VenvStatus(
                    False,
                    venv,
                    f"could not create the auto-circuit venv (no network to PyPI?); ACDC skipped; see {log}",
                    time.perf_counter() - start,
                )
    check = subprocess.run(
        [
            str(venv_python(venv)),
            "-c",
            "import auto_circuit, transformer_lens; print(transformer_lens.__file__)",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    if check.returncode != 0:
        last = (check.stderr.strip().splitlines() or ["import failed"])[-1]
        return VenvStatus(False, venv, f"auto-circuit venv built but does not import ({last}); ACDC skipped")
    seconds = time.perf_counter() - start
    (venv / _READY_MARKER).write_text(
        json.dumps({"requirements": list(VENV_REQUIREMENTS), "seconds": seconds})
    )
    return VenvStatus(True, venv, f"auto-circuit venv created at {venv} in {seconds:.0f} s", seconds)


# --- export (our environment, TL 4.x) -----------------------------------------------------------


def tl_state_dict(model: Any) -> dict[str, Any]:
    """The network's weights in the classic TransformerLens layout, as float32 numpy arrays.

    Read through the bridge's stacked weight views (``W_Q`` is ``[layer, head, d_model,
    d_head]``), so this works for any target, including the unembedding we recovered
    from tracr rather than auto-circuit's identity-shaped guess.
    """
    import numpy as np

    def arr(t: Any) -> Any:
        return np.asarray(t.detach().cpu().numpy(), dtype=np.float32)

    cfg = model.cfg
    sd: dict[str, Any] = {
        "embed.W_E": arr(model.W_E),
        "pos_embed.W_pos": arr(model.W_pos),
        "unembed.W_U": arr(model.W_U),
        "unembed.b_U": arr(model.b_U),
    }
    for layer in range(cfg.n_layers):
        for n in ("Q", "K", "V"):
            sd[f"blocks.{layer}.attn.W_{n}"] = arr(getattr(model, f"W_{n}")[layer])
            sd[f"blocks.{layer}.attn.b_{n}"] = arr(getattr(model, f"b_{n}")[layer])
        sd[f"blocks.{layer}.attn.W_O"] = arr(model.W_O[layer])
        sd[f"blocks.{layer}.attn.b_O"] = arr(model.b_O[layer])
        if not getattr(cfg, "attn_only", False):
            sd[f"blocks.{layer}.mlp.W_in"] = arr(model.W_in[layer])
            sd[f"blocks.{layer}.mlp.b_in"] = arr(model.b_in[layer])
            sd[f"blocks.{layer}.mlp.W_out"] = arr(model.W_out[layer])
            sd[f"blocks.{layer}.mlp.b_out"] = arr(model.b_out[layer])
    return sd


def model_config(model: Any) -> dict[str, Any]:
    cfg = model.cfg
    keys = (
        "n_layers",
        "d_model",
        "d_head",
        "n_heads",
        "d_mlp",
        "d_vocab",
        "d_vocab_out",
        "n_ctx",
        "act_fn",
        "normalization_type",
        "attention_dir",
        "attn_only",
    )
    return {k: getattr(cfg, k, None) for k in keys}


@dataclass(frozen=True)
class PeerSettings:
    """How the peer is run: batch size, sequence length and ACDC's threshold tau = base * 10**exp."""

    n: int = 128
    seed: int = 0
    tau_base: int = 1
    tau_exp: int = -2
    timeout_s: float = 600.0


def export_target(target: Target, directory: Path, settings: PeerSettings) -> tuple[Path, Path]:
    """Write IN.npz / IN.json for the worker: weights, config and clean/corrupt batches.

    Both batches have the task's maximum length (auto-circuit stacks prompts, so they
    must share one length); the corrupt batch is an independent sample, i.e. ACDC's
    resample ablation, the same null our causal scrubbing uses for irrelevant paths.
    """
    import numpy as np
    import torch

    directory.mkdir(parents=True, exist_ok=True)
    length = target.max_len
    clean_inputs = target.task.sample(settings.n, settings.seed, length=length)
    corrupt_inputs = target.task.sample(settings.n, settings.seed + 1, length=length)
    clean, corrupt = target.tokens(clean_inputs), target.tokens(corrupt_inputs)
    with torch.no_grad():
        logits = target.model(clean)
    offset = target.position_offset
    last_only = target.task.readout == "last"
    read = logits[:, -1:, :] if last_only else logits[:, offset:, :]
    numerical = target.task.output_kind == "numerical"
    with torch.no_grad():
        corrupt_logits = target.model(corrupt)
    corrupt_read = corrupt_logits[:, -1:, :] if last_only else corrupt_logits[:, offset:, :]
    if numerical:
        answers = torch.full(read.shape[:2], int(target.numeric_column), dtype=torch.long)
        col = int(target.numeric_column)
        changed = (read[..., col] - corrupt_read[..., col]).abs() > 1e-2
    else:
        answers = read.argmax(-1)
        changed = answers != corrupt_read.argmax(-1)
    # ACDC and EAP can only find what the corruption changes: report how much that is.
    corruption_changes = float(changed.float().mean())
    arrays = dict(tl_state_dict(target.model))
    arrays.update(
        {
            "__clean": clean.numpy(),
            "__corrupt": corrupt.numpy(),
            "__answers": answers.numpy(),
            "__clean_logits": logits.numpy().astype(np.float32),
        }
    )
    npz = directory / "in.npz"
    np.savez(npz, **arrays)
    meta = {
        "target": target.name,
        "config": model_config(target.model),
        "output_kind": target.task.output_kind,
        "d_vocab_out": int(target.model.cfg.d_vocab_out),
        "has_bos": offset == 1 and not last_only,
        "last_only": last_only,
        "corruption_changes_output": corruption_changes,
        "tau_base": settings.tau_base,
        "tau_exp": settings.tau_exp,
    }
    js = directory / "in.json"
    js.write_text(json.dumps(meta))
    return npz, js


# --- run the worker -----------------------------------------------------------------------------


def run_worker(venv: Path, npz: Path, js: Path, out: Path, timeout_s: float) -> dict[str, Any]:
    start = time.perf_counter()
    try:
        proc = subprocess.run(
            [str(venv_python(venv)), str(WORKER), str(npz), str(js), str(out)],
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise PeerError(f"auto-circuit worker ran past {timeout_s:.0f} s") from None
    wall = time.perf_counter() - start
    if proc.returncode != 0 or not out.is_file():
        lines = [line for line in proc.stderr.strip().splitlines() if line.strip()]
        raise PeerError(
            f"auto-circuit worker failed: {lines[-1] if lines else 'exit ' + str(proc.returncode)}"
        )
    result = json.loads(out.read_text())
    result["worker_wall_seconds"] = wall
    return result


# --- compare ------------------------------------------------------------------------------------


def edge_components(node_name: str) -> str | None:
    """auto-circuit node name -> component: 'A1.0.Q' -> 'A1.0', 'MLP 2' -> 'MLP 2', residual ends -> None."""
    if node_name.startswith("A"):
        parts = node_name.split(".")
        return ".".join(parts[:2])
    if node_name.startswith("MLP"):
        return node_name
    return None


def location_component(location: Any) -> str | None:
    """A hypothesis Location -> the same component naming (heads 'A<layer>.<head>', 'MLP <layer>')."""
    from mechsynth.dsl.location import Location

    loc = location if isinstance(location, Location) else Location.parse(str(location))
    if loc.layer is None:
        return None
    if loc.component == "attn" and loc.head is not None:
        return f"A{loc.layer}.{loc.head}"
    if loc.component == "mlp":
        return f"MLP {loc.layer}"
    return None


def components_of(locations: Iterable[Any]) -> set[str]:
    return {c for c in (location_component(loc) for loc in locations) if c is not None}


def _kept_components(edges: Sequence[Mapping[str, Any]]) -> set[str]:
    out: set[str] = set()
    for e in edges:
        for node in (e["src"], e["dest"]):
            c = edge_components(node)
            if c is not None:
                out.add(c)
    return out


def _agreement(found: set[str], truth: set[str] | None) -> dict[str, Any]:
    if truth is None:
        return {"precision": None, "recall": None, "exact": None}
    tp = len(found & truth)
    return {
        "precision": tp / len(found) if found else None,
        "recall": tp / len(truth) if truth else None,
        "exact": found == truth,
        "missing": sorted(truth - found),
        "extra": sorted(found - truth),
    }


@dataclass(frozen=True)
class PeerComparison:
    """ACDC / EAP vs our hypothesis vs tracr's ground truth, at the level of components."""

    target: str
    n_edges: int
    acdc_edges: int
    acdc_components: tuple[str, ...]
    eap_components: tuple[str, ...]
    ours_components: tuple[str, ...] | None
    truth_components: tuple[str, ...] | None
    acdc_vs_truth: Mapping[str, Any]
    eap_vs_truth: Mapping[str, Any]
    ours_vs_truth: Mapping[str, Any]
    acdc_seconds: float
    eap_seconds: float
    worker_wall_seconds: float
    tau: float
    faithfulness: str
    rebuild_max_abs_diff: float
    corruption_changes_output: float | None = None
    edges_kept: tuple[str, ...] = field(default=())

    def to_json(self) -> dict[str, Any]:
        from dataclasses import asdict

        return asdict(self)


def compare_result(
    target_name: str, result: Mapping[str, Any], truth: set[str] | None, ours: set[str] | None
) -> PeerComparison:
    edges = result["edges"]
    kept = [e for e in edges if e["acdc_kept"]]
    # EAP ranks edges; we read off a circuit of the same size ACDC chose, so the two are
    # compared at equal sparsity rather than at two unrelated thresholds.
    ranked = sorted(edges, key=lambda e: -e["eap_score"])[: len(kept)]
    acdc_c, eap_c = _kept_components(kept), _kept_components(ranked)
    return PeerComparison(
        target=target_name,
        n_edges=int(result["n_edges"]),
        acdc_edges=len(kept),
        acdc_components=tuple(sorted(acdc_c)),
        eap_components=tuple(sorted(eap_c)),
        ours_components=tuple(sorted(ours)) if ours is not None else None,
        truth_components=tuple(sorted(truth)) if truth is not None else None,
        acdc_vs_truth=_agreement(acdc_c, truth),
        eap_vs_truth=_agreement(eap_c, truth),
        ours_vs_truth=_agreement(ours, truth) if ours is not None else _agreement(set(), None),
        acdc_seconds=float(result["acdc_seconds"]),
        eap_seconds=float(result["eap_seconds"]),
        worker_wall_seconds=float(result.get("worker_wall_seconds", 0.0)),
        tau=float(result["tau"]),
        faithfulness=str(result["faithfulness"]),
        rebuild_max_abs_diff=float(result["rebuild_max_abs_diff"]),
        corruption_changes_output=result.get("corruption_changes_output"),
        edges_kept=tuple(e["edge"] for e in kept),
    )


def run_peer(
    targets: Sequence[Target],
    ours: Mapping[str, Sequence[Any]],
    work_dir: Path,
    *,
    settings: PeerSettings | None = None,
    venv: Path | None = None,
    create_venv: bool = True,
) -> dict[str, Any]:
    """Run ACDC and EAP on each target; compare with our locations and the ground truth.

    ``ours`` maps a target name to the locations our accepted hypothesis claims (absent
    when nothing was accepted). Returns a JSON-able dict; when the venv is unavailable it
    holds ``skipped`` with the one-line reason instead of results.
    """
    settings = settings or PeerSettings()
    status = ensure_venv(venv, create=create_venv)
    if not status.ready:
        return {"skipped": status.message, "venv": str(status.path)}
    rows, errors = [], {}
    for target in targets:
        truth = components_of(target.ground_truth.correspondence.values()) if target.ground_truth else None
        mine = components_of(ours[target.name]) if target.name in ours else None
        directory = work_dir / target.name.replace(":", "_")
        try:
            npz, js = export_target(target, directory, settings)
            result = run_worker(status.path, npz, js, directory / "out.json", settings.timeout_s)
            result["corruption_changes_output"] = json.loads(js.read_text())["corruption_changes_output"]
            rows.append(compare_result(target.name, result, truth, mine).to_json())
        except (PeerError, OSError, ValueError) as e:
            errors[target.name] = str(e).splitlines()[0] if str(e) else type(e).__name__
    return {
        "venv": str(status.path),
        "venv_message": status.message,
        "requirements": list(VENV_REQUIREMENTS),
        "settings": {
            "n": settings.n,
            "seed": settings.seed,
            "tau": settings.tau_base * 10.0**settings.tau_exp,
        },
        "rows": rows,
        "errors": errors,
    }
