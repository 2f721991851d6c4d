"""Training zoo targets: a recipe and a seed in, a checkpoint with measured accuracy out.

Determinism: parameters are initialised from `torch.manual_seed(seed)` and every training
batch is drawn by `task.sample(batch, seed=<derived from (seed, step)>)`, so a recipe and
a seed give the same checkpoint on the same software stack.

Held-out inputs: an input is *held out* iff a stable hash of it falls in a fixed 10%
bucket (`is_heldout`). Training batches never contain a held-out input; the accuracy
recorded in the checkpoint is measured only on held-out inputs, so it is accuracy on
inputs the network has never seen. (For modular addition the held-out pairs are
enumerated exhaustively.)

Loss: cross-entropy at the positions the task reads (`readout`), where the label is
defined; for a multilabel task (a set of labels per position) per-label binary
cross-entropy against the multi-hot label, and accuracy is set accuracy (every label right).
Tasks that read every position are trained at full length (for a causal model every
shorter input is a prefix); tasks that read only the last position and take several lengths
(one answer token per length) cycle through the lengths, one length per step.

Where it is written: the shipped checkpoints (`models/checkpoints/`) are what
`trained:<name>` loads and what every recorded number was measured on, so retraining never
replaces them by accident. Without `out` a checkpoint goes to `./checkpoints/`; an existing
checkpoint is replaced only with `force`, and the shipped one only when `out` names its
directory *and* `force` is given. The check runs before training (minutes), not after.
"""

from __future__ import annotations

import math
import sys
import time
import zlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from mechsynth.models import checkpoint
from mechsynth.models.bridge import build_bridge
from mechsynth.models.target import Target, TargetError, outputs_equal
from mechsynth.models.tasks import make_task
from mechsynth.models.zoo import CHECKPOINT_DIR, Recipe, recipe

DEFAULT_OUT = Path("checkpoints")  # relative to the working directory; never the shipped directory
HELDOUT_BUCKETS = 10  # 1 in 10 inputs is held out
N_EVAL = 4000


def is_heldout(x: Sequence[Any]) -> bool:
    """Stable (process-independent) membership of an input in the held-out split."""
    return zlib.crc32(repr(tuple(x)).encode()) % HELDOUT_BUCKETS == 0


def _draw(
    task: Any, n: int, seed: int, *, heldout: bool, length: int | None, broader: bool = False
) -> list[list]:
    """n inputs on the requested side of the held-out split (rejection sampling, deterministic)."""
    out: list[list] = []
    round_ = 0
    while len(out) < n:
        sub_seed = seed * 1_000_003 + round_
        batch = task.broader_sample(n, sub_seed) if broader else task.sample(n, sub_seed, length=length)
        out += [x for x in batch if is_heldout(x) == heldout]
        round_ += 1
    return out[:n]


def _label_ids(target: Target, inputs: list[list]) -> torch.Tensor:
    """Class index per model position, -100 (ignored) where nothing is read."""
    index = {v: j for j, v in enumerate(target.output_values)}
    labels = target.task.label(inputs)
    off = target.position_offset
    ids = torch.full((len(inputs), len(inputs[0]) + off), -100, dtype=torch.long)
    for b, row in enumerate(labels):
        for i, v in enumerate(row):
            if v is not None:
                ids[b, i + off] = index[v]
    return ids


def _label_sets(target: Target, inputs: list[list]) -> tuple[torch.Tensor, torch.Tensor]:
    """Multilabel targets: multi-hot labels [B, T, V] and the mask [B, T] of positions trained on."""
    labels = target.task.label(inputs)
    off = target.position_offset
    hot = torch.zeros(len(inputs), len(inputs[0]) + off, len(target.output_values))
    mask = torch.zeros(len(inputs), len(inputs[0]) + off, dtype=torch.bool)
    column = {v: j for j, v in enumerate(target.output_values)}
    for b, row in enumerate(labels):
        for i, v in enumerate(row):
            if v is not None:
                mask[b, i + off] = True
                for label in v:
                    hot[b, i + off, column[label]] = 1.0
    return hot, mask


def _loss(target: Target, logits: torch.Tensor, inputs: list[list]) -> torch.Tensor:
    """Cross-entropy at read positions; a multilabel head gets per-label binary cross-entropy."""
    if target.task.output_kind == "multilabel":
        hot, mask = _label_sets(target, inputs)
        return torch.nn.functional.binary_cross_entropy_with_logits(logits[mask], hot[mask])
    return torch.nn.functional.cross_entropy(
        logits.reshape(-1, logits.shape[-1]), _label_ids(target, inputs).reshape(-1), ignore_index=-100
    )


def evaluate(target: Target, inputs: list[list]) -> dict[str, float]:
    """Per-position and per-sequence accuracy over read positions with defined labels."""
    preds, golds = target.predict(inputs), target.task.label(inputs)
    right = total = seq_right = 0
    for p, g in zip(preds, golds):
        ok = [outputs_equal(a, b, target.task.output_kind) for a, b in zip(p, g) if b is not None]
        right, total, seq_right = right + sum(ok), total + len(ok), seq_right + all(ok)
    return {"accuracy": right / total, "sequence_accuracy": seq_right / len(inputs), "n_eval": len(inputs)}


def heldout_inputs(target: Target, seed: int, n: int = N_EVAL) -> list[list]:
    """The evaluation set: held-out inputs (all of them when the input space is small)."""
    task = target.task
    space = len(task.vocab) ** task.max_len
    if task.generator is not None and task.domain is not None and space <= 100_000:
        return [x for x in task.enumerate() if is_heldout(x)]
    return _draw(task, n, 10_000 + seed, heldout=True, length=None)


def _lr(step: int, r: Recipe) -> float:
    # Linear warm-up, then cosine decay to 10% (stable for LayerNorm-free models) or constant.
    if step < r.warmup:
        return r.lr * (step + 1) / r.warmup
    if r.schedule == "constant":
        return r.lr
    progress = (step - r.warmup) / max(1, r.steps - r.warmup)
    return r.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))


def _train_length(task: Any, step: int) -> int:
    if task.readout == "all" or task.min_len == task.max_len:
        return task.max_len
    return task.min_len + step % (task.max_len - task.min_len + 1)


def build_untrained(r: Recipe, seed: int) -> Target:
    """The recipe's architecture, freshly initialised from `seed`, wrapped as a target."""
    task = make_task(r.task_kind, r.task_params, name=f"trained:{r.name}")
    input_vocab = list(task.vocab) + ([task.bos] if task.bos is not None else [])
    offset = 0 if task.bos is None else 1
    config = {**r.architecture, "d_vocab": len(input_vocab), "d_vocab_out": len(task.output_vocab),
              "n_ctx": task.max_len + offset, "seed": seed}
    model = build_bridge(config)
    return Target(name=f"trained:{r.name}", model=model, task=task,
                  input_ids={v: i for i, v in enumerate(input_vocab)}, output_values=task.output_vocab,
                  info={"kind": "trained", "config": config})


def output_path(name: str, out: str | Path | None = None, *, force: bool = False) -> Path:
    """The checkpoint JSON path `train` writes, refused (TargetError) when it would replace one unasked."""
    directory = Path(out) if out is not None else DEFAULT_OUT
    path = checkpoint.paths(directory / name)[0]
    if directory.resolve() == CHECKPOINT_DIR.resolve() and (out is None or not force):
        raise TargetError(f"refusing to overwrite the shipped checkpoint {path}; retrain into another "
                          "--out, or name this directory with --out and pass --force to replace it")
    if path.exists() and not force:
        raise TargetError(f"checkpoint {path} exists; pass --force to replace it, or choose another --out")
    return path


def train(name: str, seed: int = 0, out: str | Path | None = None, *, steps: int | None = None,
          log: Callable[[str], None] | None = None, force: bool = False) -> Path:
    """Train zoo target `name` from `seed`; write the checkpoint under `out` (see the module docstring
    for where, and for `force`); return its JSON path."""
    r = recipe(name)
    path = output_path(name, out, force=force)
    if steps is not None:
        r = Recipe(**{**r.__dict__, "steps": steps})
    log = log or (lambda s: None)
    # One thread: tiny models train fastest this way, and results do not depend on the core count.
    torch.set_num_threads(1)
    torch.manual_seed(seed)
    target = build_untrained(r, seed)
    task, model = target.task, target.model
    if model.cfg.attention_dir == "bidirectional" and task.min_len != task.max_len:
        raise TargetError(f"{name}: bidirectional tasks need one length, not {task.min_len}..{task.max_len}")
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=r.lr, betas=(0.9, 0.98), weight_decay=r.weight_decay)
    start = time.perf_counter()
    for step in range(r.steps):
        for group in opt.param_groups:
            group["lr"] = _lr(step, r)
        length = _train_length(task, step)
        inputs = _draw(task, r.batch_size, seed * 100_003 + step, heldout=False, length=length)
        logits = model(target.tokens(inputs))
        loss = _loss(target, logits, inputs)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if step % 500 == 0 or step == r.steps - 1:
            log(f"{name} step {step:5d} loss {loss.item():.4f}")
    seconds = time.perf_counter() - start
    model.eval()
    metrics = evaluate(target, heldout_inputs(target, seed))
    if task.broader_generator is not None:
        broader = _draw(task, N_EVAL, 20_000 + seed, heldout=True, length=None, broader=True)
        metrics["broader_accuracy"] = evaluate(target, broader)["accuracy"]
    metrics["train_seconds"] = round(seconds, 1)
    log(f"{name}: held-out accuracy {metrics['accuracy']:.4f} in {seconds:.0f}s")
    meta = {
        "name": name,
        "config": target.info["config"],
        "task": {"kind": r.task_kind, "params": r.task_params},
        "input_vocab": [v for v, _ in sorted(target.input_ids.items(), key=lambda kv: kv[1])],
        "output_values": list(target.output_values),
        "metrics": metrics,
        "training": {"seed": seed, "steps": r.steps, "batch_size": r.batch_size, "lr": r.lr,
                     "weight_decay": r.weight_decay, "warmup": r.warmup, "schedule": r.schedule,
                     "torch": torch.__version__,
                     "threads": torch.get_num_threads(),
                     "heldout": f"crc32(repr(input)) % {HELDOUT_BUCKETS} == 0"},
    }
    return checkpoint.write(path, model, meta)


def cmd_train(name: str, seed: int = 0, out: str | Path | None = None, force: bool = False) -> int:
    """`mechsynth train <name>`: retrain a zoo target; prints progress and the result line."""
    try:
        path = train(name, seed=seed, out=out, force=force,
                     log=lambda s: print(s, file=sys.stderr, flush=True))
    except TargetError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    meta = checkpoint.read_metadata(path)
    m = meta["metrics"]
    print(f"trained:{name} seed {seed}: held-out accuracy {m['accuracy']:.4f} "
          f"({m['n_eval']} inputs), {m['train_seconds']}s -> {path}")
    return 0


if __name__ == "__main__":  # python -m mechsynth.models.train NAME [SEED] [OUT]
    args = sys.argv[1:]
    if not args:
        print("usage: python -m mechsynth.models.train NAME [SEED] [OUT]", file=sys.stderr)
        raise SystemExit(2)
    seed_arg, out_arg = (int(args[1]) if len(args) > 1 else 0), (args[2] if len(args) > 2 else None)
    raise SystemExit(cmd_train(args[0], seed_arg, out_arg))
