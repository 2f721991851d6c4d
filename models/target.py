"""Targets: a network together with the task it is asked to explain.

mechsynth never explains a network in the abstract; it explains what a network does
*on a task*. A `Task` says which raw inputs exist (vocabulary, lengths, a sampler and
optionally a domain predicate), what the right answer is at each position, and which
positions are read. A `Target` pairs a TransformerLens `TransformerBridge` with a task
and with the encoding that turns raw inputs into token ids and logits back into raw
output values:

    raw input  [3, 1, 2]                   (values from task.vocab)
    tokens     [BOS, id(3), id(1), id(2)]  (BOS only when task.bos is set)
    logits     [B, T, d_vocab_out]
    decoded    [v0, v1, v2]                (argmax -> output value, or a numeric column;
                                             None at positions the task does not read)

Model position = input position + `position_offset` (1 with a BOS token, else 0).

A target may carry a ground-truth `Hypothesis` (tracr-compiled targets do: the program
they were compiled from and the component that writes each variable). Targets are
immutable; the network inside is shared and must be treated as read-only (controls in
`models.controls` return modified copies).
"""

from __future__ import annotations

import itertools
import math
import random
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any
from collections.abc import Callable, Hashable, Iterator, Mapping, Sequence

import torch

if TYPE_CHECKING:
    from dsl.hypothesis import Hypothesis
    from transformer_lens.model_bridge import TransformerBridge


class TargetError(ValueError):
    """A target that cannot be loaded, built or fed the given input (one-line message)."""


Labeller = Callable[[Sequence[Any]], list]
Generator = Callable[[random.Random, int], list]
Domain = Callable[[Sequence[Any]], bool]

# Numerical outputs are read from one logit column; tracr's numerical MLPs are approximate,
# so "equal" means equal within this tolerance.
NUMERIC_ATOL = 1e-2


def outputs_equal(a: Any, b: Any, output_kind: str = "categorical") -> bool:
    """Whether two decoded output values agree (numerical values within NUMERIC_ATOL)."""
    if a is None or b is None:
        return a is None and b is None
    if output_kind == "numerical":
        try:
            return math.isclose(float(a), float(b), abs_tol=NUMERIC_ATOL)
        except (TypeError, ValueError):
            return False
    return a == b


@dataclass(frozen=True)
class Task:
    """Inputs, true outputs and readout of an algorithmic task.

    `labeller(x)` gives the true output at every position of one raw input (None where
    undefined); `readout` says which positions are read: "all" or only the "last".
    `generator(rng, length)` draws one input of that length (default: i.i.d. uniform over
    the vocabulary, rejected until it is in `domain`). `broader_generator` draws from a
    broader distribution (used to test that an explanation is not tied to the training
    distribution); how well the network itself does there is measured, not assumed:
    trained targets record it as `info["broader_accuracy"]`.
    """

    name: str
    vocab: tuple
    min_len: int
    max_len: int
    labeller: Labeller = field(compare=False, repr=False)
    bos: Hashable | None = None
    readout: str = "all"
    output_kind: str = "categorical"
    output_vocab: tuple = ()
    generator: Generator | None = field(default=None, compare=False, repr=False)
    domain: Domain | None = field(default=None, compare=False, repr=False)
    broader_generator: Generator | None = field(default=None, compare=False, repr=False)
    description: str = ""

    def __post_init__(self) -> None:
        if self.readout not in ("all", "last"):
            raise TargetError(f"task {self.name}: readout must be 'all' or 'last', got {self.readout!r}")
        if self.output_kind not in ("categorical", "numerical"):
            raise TargetError(f"task {self.name}: output_kind must be categorical or numerical")
        if not 1 <= self.min_len <= self.max_len:
            raise TargetError(
                f"task {self.name}: need 1 <= min_len <= max_len, got {self.min_len}, {self.max_len}"
            )
        object.__setattr__(self, "vocab", tuple(self.vocab))
        object.__setattr__(self, "output_vocab", tuple(self.output_vocab))

    # --- inputs -----------------------------------------------------------------------------
    def in_domain(self, x: Sequence[Any]) -> bool:
        return (
            self.min_len <= len(x) <= self.max_len
            and all(v in self.vocab for v in x)
            and (self.domain is None or self.domain(x))
        )

    def _draw(self, rng: random.Random, length: int, generator: Generator | None) -> list:
        if generator is not None:
            return list(generator(rng, length))
        for _ in range(10_000):
            x = [rng.choice(self.vocab) for _ in range(length)]
            if self.domain is None or self.domain(x):
                return x
        raise TargetError(f"task {self.name}: could not draw an input of length {length} in its domain")

    def sample(self, n: int, seed: int, length: int | None = None) -> list[list]:
        """`n` raw inputs, deterministic in `seed`; `length` fixes the length."""
        if length is not None and not self.min_len <= length <= self.max_len:
            raise TargetError(f"task {self.name}: length {length} outside {self.min_len}..{self.max_len}")
        rng = random.Random(seed)
        out = []
        for _ in range(n):
            size = length if length is not None else rng.randint(self.min_len, self.max_len)
            out.append(self._draw(rng, size, self.generator))
        return out

    def broader_sample(self, n: int, seed: int) -> list[list]:
        """`n` inputs from the broader distribution (TargetError if the task defines none)."""
        if self.broader_generator is None:
            raise TargetError(f"task {self.name} defines no broader input distribution")
        rng = random.Random(seed)
        return [
            self._draw(rng, rng.randint(self.min_len, self.max_len), self.broader_generator)
            for _ in range(n)
        ]

    def enumerate(self, max_len: int | None = None) -> Iterator[list]:
        """Every input in the domain, shortest first (vocab^length: keep lengths small)."""
        for length in range(self.min_len, (max_len or self.max_len) + 1):
            for x in itertools.product(self.vocab, repeat=length):
                if self.domain is None or self.domain(x):
                    yield list(x)

    # --- outputs ----------------------------------------------------------------------------
    def readout_positions(self, length: int) -> list[int]:
        """Input positions whose outputs the task reads."""
        return list(range(length)) if self.readout == "all" else [length - 1]

    def label(self, inputs: Sequence[Sequence[Any]]) -> list[list]:
        """True outputs per position (None where not read or undefined)."""
        out = []
        for x in inputs:
            y = list(self.labeller(list(x)))
            read = set(self.readout_positions(len(x)))
            out.append([v if i in read else None for i, v in enumerate(y)])
        return out


@dataclass(frozen=True, eq=False)
class Target:
    """A network, its task, its input/output encoding and (when known) its ground truth.

    `input_ids` maps raw token values (including the BOS value) to token ids.
    `output_values[j]` is the decoded value of logit column j (categorical outputs);
    numerical outputs are read from column `numeric_column`. `info` holds provenance
    (kind, accuracy, training time, ...), shown by `models.list_targets`.
    """

    name: str
    model: TransformerBridge = field(repr=False)
    task: Task
    input_ids: Mapping[Any, int] = field(repr=False)
    output_values: tuple = field(default=(), repr=False)
    ground_truth: Hypothesis | None = field(default=None, repr=False)
    numeric_column: int = 0
    info: Mapping[str, Any] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "input_ids", MappingProxyType(dict(self.input_ids)))
        object.__setattr__(self, "output_values", tuple(self.output_values))
        object.__setattr__(self, "info", MappingProxyType(dict(self.info)))
        missing = [v for v in self.task.vocab if v not in self.input_ids]
        if missing:
            raise TargetError(f"target {self.name}: vocabulary value {missing[0]!r} has no token id")
        if self.task.bos is not None and self.task.bos not in self.input_ids:
            raise TargetError(f"target {self.name}: BOS value {self.task.bos!r} has no token id")
        d_vocab_out = self.model.cfg.d_vocab_out
        if self.task.output_kind == "categorical" and len(self.output_values) != d_vocab_out:
            raise TargetError(
                f"target {self.name}: {len(self.output_values)} output values for {d_vocab_out} logit columns"
            )
        self._check_fits_network()

    def _check_fits_network(self) -> None:
        """The task must fit the network it is paired with, checked on load, before any input is drawn.

        A checkpoint's task is rebuilt from recorded parameters, so a task that asks for
        inputs longer than the network's positions (or token ids it has no embedding for)
        would otherwise fail deep inside a forward pass, or, with a length of 1e9, exhaust
        memory while sampling inputs.
        """
        cfg = self.model.cfg
        positions = self.task.max_len + self.position_offset
        if positions > cfg.n_ctx:
            bos = " plus BOS" if self.position_offset else ""
            raise TargetError(f"target {self.name}: task inputs of up to {self.task.max_len} tokens{bos} "
                              f"need {positions} positions, but the network has n_ctx={cfg.n_ctx}")
        for value, token_id in self.input_ids.items():
            if isinstance(token_id, bool) or not isinstance(token_id, int) or not 0 <= token_id < cfg.d_vocab:
                raise TargetError(f"target {self.name}: input value {value!r} has token id {token_id!r}, "
                                  f"outside the network's vocabulary 0..{cfg.d_vocab - 1} "
                                  f"(d_vocab={cfg.d_vocab})")
        if self.task.output_kind == "numerical" and not 0 <= self.numeric_column < cfg.d_vocab_out:
            raise TargetError(f"target {self.name}: numeric output column {self.numeric_column} outside the "
                              f"network's {cfg.d_vocab_out} logit columns (d_vocab_out)")
        for name, param in self.model.named_parameters():
            if not bool(torch.isfinite(param).all()):
                shown = name.replace("._original_component", "")  # the bridge's wrapper, not the weight
                raise TargetError(f"target {self.name}: weight {shown} holds NaN or infinite values")

    # --- convenience views ------------------------------------------------------------------
    @property
    def vocab(self) -> tuple:
        return self.task.vocab

    @property
    def max_len(self) -> int:
        return self.task.max_len

    @property
    def kind(self) -> str:
        return str(self.info.get("kind", "file"))

    @property
    def position_offset(self) -> int:
        return 0 if self.task.bos is None else 1

    def readout_positions(self, length: int) -> list[int]:
        return self.task.readout_positions(length)

    # --- encoding ---------------------------------------------------------------------------
    def tokens(self, inputs: Sequence[Sequence[Any]]) -> torch.Tensor:
        """Token ids [B, T] for equal-length raw inputs (BOS prepended when the task uses one)."""
        if not inputs:
            raise TargetError(f"target {self.name}: no inputs")
        length = len(inputs[0])
        if any(len(x) != length for x in inputs):
            raise TargetError(f"target {self.name}: tokens() needs inputs of one length (group by length)")
        if not 1 <= length <= self.task.max_len:
            raise TargetError(f"target {self.name}: input length {length} outside 1..{self.task.max_len}")
        prefix = [] if self.task.bos is None else [self.input_ids[self.task.bos]]
        rows = []
        for x in inputs:
            try:
                rows.append(prefix + [self.input_ids[v] for v in x])
            except (KeyError, TypeError):
                bad = next(v for v in x if not _known(v, self.input_ids))
                msg = f"target {self.name}: {bad!r} is not in the vocabulary {self.vocab}"
                raise TargetError(msg) from None
        return torch.tensor(rows, dtype=torch.long)

    def logits(self, inputs: Sequence[Sequence[Any]]) -> torch.Tensor:
        """Network logits [B, T, d_vocab_out] for equal-length raw inputs."""
        with torch.no_grad():
            return self.model(self.tokens(inputs))

    def decode(self, logits: torch.Tensor, inputs: Sequence[Sequence[Any]]) -> list[list]:
        """Decoded outputs per input position (None where the task does not read)."""
        off = self.position_offset
        out = []
        if self.task.output_kind == "categorical":
            ids = logits.argmax(-1).tolist()
        else:
            values = logits[..., self.numeric_column].tolist()
        for b, x in enumerate(inputs):
            row: list = [None] * len(x)
            for i in self.readout_positions(len(x)):
                if self.task.output_kind == "categorical":
                    row[i] = self.output_values[ids[b][i + off]]
                else:
                    row[i] = values[b][i + off]
            out.append(row)
        return out

    def predict(self, inputs: Sequence[Sequence[Any]], batch_size: int = 1024) -> list[list]:
        """The network's decoded outputs for raw inputs of any lengths (grouped internally)."""
        by_len: dict[int, list[int]] = {}
        for i, x in enumerate(inputs):
            by_len.setdefault(len(x), []).append(i)
        out: list[list] = [[] for _ in inputs]
        for idx in by_len.values():
            for start in range(0, len(idx), batch_size):
                chunk = idx[start : start + batch_size]
                batch = [list(inputs[i]) for i in chunk]
                for i, row in zip(chunk, self.decode(self.logits(batch), batch)):
                    out[i] = row
        return out

    def accuracy(self, inputs: Sequence[Sequence[Any]]) -> float:
        """Fraction of read positions (with a defined label) where the network is right."""
        right = total = 0
        for pred, gold in zip(self.predict(inputs), self.task.label(inputs)):
            for p, g in zip(pred, gold):
                if g is None:
                    continue
                total += 1
                right += outputs_equal(p, g, self.task.output_kind)
        return right / total if total else float("nan")


def _known(value: Any, ids: Mapping[Any, int]) -> bool:
    try:
        return value in ids
    except TypeError:
        return False


@dataclass(frozen=True)
class TargetRow:
    """One line of the target table."""

    name: str
    kind: str
    layers: int
    heads: int
    d_model: int
    accuracy: float | None
    train_seconds: float | None = None
    description: str = ""

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)
