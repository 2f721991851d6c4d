"""Preflight: what a user must see about a target before running synthesis on it.

Synthesis explains what a network does on a task, so a wrong encoding (a missing BOS, the
wrong positions read, logit columns decoded to the wrong values) or a network that does not
actually solve the task makes every later number meaningless. `preflight(target)` gathers,
from the target's own public API only:

- the architecture (layers, heads, d_model, d_head, MLPs or attention-only, normalisation,
  attention direction, vocabulary sizes, context) and where its config came from;
- the encoding of one example input: its raw values, the tokens and token ids the network
  sees, and which model positions are read (with the label and the network's output there);
- the network's accuracy on fresh inputs from the task's sampler and from its broader
  distribution (where the task defines one), per read position and per input, beside the
  accuracy recorded at training time;
- the first few inputs it gets wrong, with what was expected and what it said.

`mechsynth check TARGET` prints it (`--json` for the same as JSON).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from mechsynth.models.target import Target, TargetError, format_output, outputs_equal

N_INPUTS = 1000
N_WRONG = 5


@dataclass(frozen=True)
class Mistake:
    """One input the network gets wrong: the read positions, expected and predicted values."""

    input: tuple
    positions: tuple[int, ...]
    expected: tuple
    predicted: tuple

    def to_json(self) -> dict[str, Any]:
        return {"input": list(self.input), "positions": list(self.positions), "expected": list(self.expected),
                "predicted": list(self.predicted)}


@dataclass(frozen=True)
class Accuracy:
    """The network against the task's labels on one sample of inputs."""

    distribution: str
    n_inputs: int
    n_read: int
    accuracy: float
    sequence_accuracy: float
    wrong: tuple[Mistake, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {"distribution": self.distribution, "n_inputs": self.n_inputs, "n_read": self.n_read,
                "accuracy": self.accuracy, "sequence_accuracy": self.sequence_accuracy,
                "wrong": [m.to_json() for m in self.wrong]}


@dataclass(frozen=True)
class Example:
    """One input as the network sees it."""

    input: tuple
    tokens: tuple  # raw values per model position (special tokens included)
    ids: tuple[int, ...]
    read: tuple[int, ...]  # model positions whose output the task reads
    labels: tuple  # the task's answer at each read position
    outputs: tuple  # the network's decoded output at each read position

    def to_json(self) -> dict[str, Any]:
        return {k: list(v) for k, v in self.__dict__.items()}


@dataclass(frozen=True)
class Preflight:
    """Everything `mechsynth check` shows about one target."""

    target: str
    kind: str
    architecture: dict[str, Any]
    config_source: str
    task: dict[str, Any]
    example: Example
    accuracy: Accuracy
    broader: Accuracy | None
    recorded: dict[str, Any] = field(default_factory=dict)
    position_offset: int = 0  # model position = input position + this

    def to_json(self) -> dict[str, Any]:
        return {"target": self.target, "kind": self.kind, "architecture": self.architecture,
                "config_source": self.config_source, "task": self.task, "example": self.example.to_json(),
                "accuracy": self.accuracy.to_json(),
                "broader": self.broader.to_json() if self.broader is not None else None,
                "recorded": self.recorded, "position_offset": self.position_offset}


def architecture(target: Target) -> dict[str, Any]:
    """The network's shape as its TransformerLens config states it."""
    cfg = target.model.cfg
    attn_only = bool(getattr(cfg, "attn_only", False))
    return {
        "n_layers": cfg.n_layers, "n_heads": cfg.n_heads, "d_model": cfg.d_model, "d_head": cfg.d_head,
        "d_mlp": None if attn_only else getattr(cfg, "d_mlp", None), "attn_only": attn_only,
        "act_fn": None if attn_only else getattr(cfg, "act_fn", None),
        "normalization_type": getattr(cfg, "normalization_type", None),
        "attention_dir": getattr(cfg, "attention_dir", "causal"),
        "d_vocab": cfg.d_vocab, "d_vocab_out": cfg.d_vocab_out, "n_ctx": cfg.n_ctx,
        "parameters": sum(p.numel() for p in target.model.parameters()),
    }


def task_summary(target: Target) -> dict[str, Any]:
    task = target.task
    return {"name": task.name, "description": task.description, "vocab": list(task.vocab),
            "min_len": task.min_len, "max_len": task.max_len, "bos": task.bos, "readout": task.readout,
            "output_kind": task.output_kind, "output_values": list(target.output_values),
            "broader_distribution": task.broader_generator is not None}


def example(target: Target, x: Sequence[Any]) -> Example:
    ids = target.tokens([list(x)])[0].tolist()
    value_of = {i: v for v, i in target.input_ids.items()}
    predicted, label = target.predict([list(x)])[0], target.task.label([list(x)])[0]
    read_inputs = [i for i, v in enumerate(predicted) if v is not None]
    off = target.position_offset
    return Example(input=tuple(x), tokens=tuple(value_of.get(i, i) for i in ids), ids=tuple(ids),
                   read=tuple(i + off for i in read_inputs), labels=tuple(label[i] for i in read_inputs),
                   outputs=tuple(predicted[i] for i in read_inputs))


def accuracy(target: Target, inputs: Sequence[Sequence[Any]], distribution: str,
             n_wrong: int = N_WRONG) -> Accuracy:
    """Per read position (with a defined label) and per input; the first `n_wrong` mistakes."""
    kind = target.task.output_kind
    right = total = seq_right = 0
    wrong: list[Mistake] = []
    for x, pred, gold in zip(inputs, target.predict(inputs), target.task.label(inputs)):
        read = [i for i, g in enumerate(gold) if g is not None]
        ok = [outputs_equal(pred[i], gold[i], kind) for i in read]
        right, total, seq_right = right + sum(ok), total + len(ok), seq_right + all(ok)
        if not all(ok) and len(wrong) < n_wrong:
            bad = [i for i, good in zip(read, ok) if not good]
            expected, said = tuple(gold[i] for i in bad), tuple(pred[i] for i in bad)
            wrong.append(Mistake(tuple(x), tuple(bad), expected, said))
    return Accuracy(distribution, len(inputs), total, right / total if total else float("nan"),
                    seq_right / len(inputs) if inputs else float("nan"), tuple(wrong))


def preflight(target: Target, n: int = N_INPUTS, seed: int = 0, n_wrong: int = N_WRONG) -> Preflight:
    """The target's architecture, one encoded example, and its accuracy on fresh inputs."""
    if n < 1:
        raise TargetError(f"preflight needs at least one input, got n={n}")
    task = target.task
    inputs = task.sample(n, seed=seed)
    broader = None
    if task.broader_generator is not None:
        broader = accuracy(target, task.broader_sample(n, seed=seed), "broader", n_wrong)
    info = dict(target.info)
    recorded = {k: info[k] for k in ("accuracy", "sequence_accuracy", "broader_accuracy", "n_eval",
                                      "train_seconds") if k in info}
    source = str(info.get("config_source") or info.get("path") or info.get("source") or info.get("kind", ""))
    longest = max(inputs, key=len)
    return Preflight(target=target.name, kind=target.kind, architecture=architecture(target),
                     config_source=source, task=task_summary(target), example=example(target, longest),
                     accuracy=accuracy(target, inputs, "task", n_wrong), broader=broader, recorded=recorded,
                     position_offset=target.position_offset)


def format_preflight(p: Preflight) -> str:
    """The text `mechsynth check` prints."""
    a, t, e = p.architecture, p.task, p.example
    kind = t["output_kind"]

    def shown(values: Sequence[Any]) -> str:
        return "[" + ", ".join(format_output(v, kind) for v in values) + "]"

    mlp = "attention-only" if a["attn_only"] else f"d_mlp {a['d_mlp']} ({a['act_fn']})"
    norm = a["normalization_type"] or "no normalisation"
    lines = [
        f"target {p.target} ({p.kind})",
        f"architecture: {a['n_layers']} layer(s), {a['n_heads']} head(s) of d_head {a['d_head']}, "
        f"d_model {a['d_model']}, {mlp}, {norm}, {a['attention_dir']}; d_vocab {a['d_vocab']}, "
        f"d_vocab_out {a['d_vocab_out']}, n_ctx {a['n_ctx']}; {a['parameters']:,} parameters",
    ]
    if p.config_source:
        lines.append(f"config from: {p.config_source}")
    lines += [
        f"task: {t['name']}: {t['description'] or '-'}",
        f"    vocab {t['vocab']}, lengths {t['min_len']}..{t['max_len']}, bos {t['bos']!r}, readout "
        f"{t['readout']}, {t['output_kind']} outputs {t['output_values']}",
        "example (the longest sampled input):",
        f"    input   {list(e.input)}",
        "    " + _columns(["position", *range(len(e.ids))], ["token", *e.tokens], ["id", *e.ids],
                          ["read", *("^" if i in e.read else "" for i in range(len(e.ids)))]),
        f"    read at model positions {list(e.read)} (input position + {p.position_offset}): "
        f"label {shown(e.labels)}, network {shown(e.outputs)}",
    ]
    for acc in (p.accuracy, p.broader):
        if acc is None:
            lines.append("broader distribution: none defined by the task")
            continue
        lines.append(f"accuracy on the {acc.distribution} distribution ({acc.n_inputs} fresh inputs, "
                     f"{acc.n_read} read positions): {acc.accuracy:.4f} per position, "
                     f"{acc.sequence_accuracy:.4f} per input")
        for m in acc.wrong:
            lines.append(f"    wrong: {list(m.input)} at input positions {list(m.positions)}: "
                         f"expected {shown(m.expected)}, network {shown(m.predicted)}")
    if p.recorded:
        recorded = ", ".join(f"{k} {v}" for k, v in p.recorded.items())
        lines.append(f"recorded when the target was built: {recorded}")
    return "\n".join(lines)


def _columns(*rows: Sequence[Any]) -> str:
    """Rows of cells aligned in columns (first cell is the row's name)."""
    cells = [[str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(cells[0]))]
    return "\n    ".join("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in cells)
