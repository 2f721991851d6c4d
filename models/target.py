"""Targets: a network together with the task it is asked to explain.

mechsynth never explains a network in the abstract; it explains what a network does
*on a task*. A `Task` says which inputs exist (vocabulary, lengths, a sampler and
optionally a domain predicate), what the right answer is at each position, and which
positions are read. A `Target` pairs a TransformerLens `TransformerBridge` with a task
and with the encoding that turns inputs into token ids and logits back into output
values:

    content    [3, 1, 2]                     (what the generator draws: values from task.vocab,
                                              and the SEP value where the task puts one)
    input      [START, 3, 1, 2, END]          (the content framed by the task's special tokens;
                                              what the program, the labeller and the readout see)
    tokens     [id(START), id(3), ..., PAD]   (a hidden BOS first when the task has one; PAD
                                              after shorter inputs of a mixed-length batch)
    logits     [B, T, d_vocab_out]
    decoded    [v0, v1, v2, v3, v4]          (argmax -> output value, or a numeric column;
                                              None at positions the task does not read)

Special tokens are task fields, any subset, each a value outside the vocabulary with its
own token id in `Target.input_ids`:

* ``bos``: a start token. By default it is *hidden*: placed at model position 0, before
  the input, so the program never sees it (tracr's convention, where BOS is the attention
  sink; the trained zoo uses it the same way). With ``bos_in_input=True`` it is position
  0 of the input itself, so it can be read (a classifier read at its start token) and a
  program can give it a value.
* ``eos``: an end token, the input's last position (placed by `Task.frame`).
* ``sep``: a separator. Where it goes is the task's business (between a list and its
  sorted copy, between two operands), so the task's generator places it in the content;
  the encoding gives it its own token id, and a program sees it as a token value.
* ``pad``: fills the positions after a shorter input in a batch of mixed lengths. It is
  never part of an input. A task with a pad token is fed mixed-length batches with a key
  mask (`Target.attention_mask`): ``model(tokens, attention_mask=mask)``, which the
  TransformerBridge forwards to its attention (transformer_lens 4.3,
  ``sources/native/model.py``: a 2-D ``[batch, seq]`` mask, 1 = keep, is OR-ed into the
  causal/bidirectional block mask as ``~mask[:, None, None, :]``, so masked *keys* get
  score -inf and weight 0 for every query; right padding leaves positions unchanged).
  Without a pad token (tracr targets, whose compiled attention has no mask), inputs are
  fed in same-length groups.

Which positions are read (`Task.readout`): ``"all"``, ``"last"``, or a function of the
input returning the positions read (every position after SEP, the answer digits, the start
token). Every check, control and proposer compares the network and a program only there.

How logits become outputs (`Task.output_kind`):

* ``"categorical"``: the argmax column's value (`Target.output_values`);
* ``"numerical"``: the value of one logit column (`Target.numeric_column`);
* ``"multilabel"``: a binary cross-entropy head (formal-language networks predicting the
  *set* of allowed next tokens): label j is on where logit j > 0, and the output is the
  tuple of the labels that are on, in column order. Two outputs agree when they are the
  same set (`outputs_equal`); `format_output` prints them as sets, ``{'(', ')'}``. A
  program expresses a set-valued output as a map to a tuple of labels (a DSL literal,
  e.g. ``table({True: ('(', ')'), False: ('(', 'END')}, open)``): one value per position
  keeps every check (behaviour, interchange, the enumerator) working on whole sets, and
  per-label agreement is reported next to it (``behaviour_per_label``).

Position ids: a network trained with position ids starting at ``k`` is a
``Target(first_position_id=k)``; model position p is then embedded as position id k + p
in every forward pass (see `_position_ids_from`). This is independent of the hidden-BOS
shift below.

Model position = input position + `position_offset` (1 with a hidden BOS, else 0).

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
from enum import StrEnum
from types import MappingProxyType
from typing import TYPE_CHECKING, Any
from collections.abc import Callable, Hashable, Iterator, Mapping, Sequence

import torch

if TYPE_CHECKING:
    from mechsynth.dsl.hypothesis import Hypothesis
    from transformer_lens.model_bridge import TransformerBridge


class TargetError(ValueError):
    """A target that cannot be loaded, built or fed the given input (one-line message)."""


Labeller = Callable[[Sequence[Any]], list]
Generator = Callable[[random.Random, int], list]
Domain = Callable[[Sequence[Any]], bool]
ReadoutFn = Callable[[Sequence[Any]], Sequence[int]]


class Readout(StrEnum):
    """The named readouts (a task may instead give a function of the input)."""

    ALL = "all"  # every position of the input
    LAST = "last"  # the input's last position


# Numerical outputs are read from one logit column; tracr's numerical MLPs are approximate,
# so "equal" means equal within this tolerance.
NUMERIC_ATOL = 1e-2

# How logits become outputs: argmax over labelled columns, one numeric column, or a set of labels.
OUTPUT_KINDS = ("categorical", "numerical", "multilabel")


def label_set(value: Any) -> frozenset:
    """The labels of a multilabel output value: a tuple/list/set of labels (a program writes a
    tuple, the network decodes to one in column order); any other value is a one-label set."""
    if isinstance(value, (tuple, list, set, frozenset)):
        return frozenset(value)
    return frozenset({value})


def format_output(value: Any, output_kind: str = "categorical") -> str:
    """An output value as a reader wants it: a multilabel value as a set ({'(', ')'}; set() when empty)."""
    if output_kind == "multilabel" and value is not None:
        labels = sorted(label_set(value), key=repr)
        return "{" + ", ".join(repr(v) for v in labels) + "}" if labels else "set()"
    return repr(value)


def outputs_equal(a: Any, b: Any, output_kind: str = "categorical") -> bool:
    """Whether two decoded output values agree (numerical values within NUMERIC_ATOL; multilabel
    values as sets: every label allowed by one is allowed by the other)."""
    if a is None or b is None:
        return a is None and b is None
    if output_kind == "multilabel":
        return label_set(a) == label_set(b)
    if output_kind == "numerical":
        try:
            return math.isclose(float(a), float(b), abs_tol=NUMERIC_ATOL)
        except (TypeError, ValueError):
            return False
    return a == b


@dataclass(frozen=True)
class Task:
    """Inputs, true outputs and readout of an algorithmic task.

    `generator(rng, length)` draws the content of one input of that length (default:
    i.i.d. uniform over the vocabulary, rejected until it is in `domain`); `min_len` and
    `max_len` are content lengths. `frame` adds the special tokens that belong to the
    input (a visible BOS first, EOS last; see the module docstring), and what the engine
    passes around, samples, labels and reads is the framed input. `domain(content)` is a
    predicate on the content. `labeller(x)` gives the true output at every position of
    one framed input (None where undefined). `readout` says which positions are read:
    "all", "last", or a function of the framed input returning its read positions.
    `broader_generator` draws content from a broader distribution (used to test that an
    explanation is not tied to the training distribution); how well the network itself
    does there is measured, not assumed: trained targets record it as
    `info["broader_accuracy"]`.
    """

    name: str
    vocab: tuple
    min_len: int
    max_len: int
    labeller: Labeller = field(compare=False, repr=False)
    bos: Hashable | None = None
    readout: Readout | ReadoutFn = Readout.ALL
    output_kind: str = "categorical"
    output_vocab: tuple = ()
    generator: Generator | None = field(default=None, compare=False, repr=False)
    domain: Domain | None = field(default=None, compare=False, repr=False)
    broader_generator: Generator | None = field(default=None, compare=False, repr=False)
    description: str = ""
    bos_in_input: bool = False
    eos: Hashable | None = None
    sep: Hashable | None = None
    pad: Hashable | None = None

    def __post_init__(self) -> None:
        if isinstance(self.readout, str):
            try:
                object.__setattr__(self, "readout", Readout(self.readout))
            except ValueError:
                raise TargetError(
                    f"task {self.name}: readout must be 'all', 'last' or a function of the input, "
                    f"got {self.readout!r}"
                ) from None
        elif not callable(self.readout):
            raise TargetError(f"task {self.name}: readout must be 'all', 'last' or a function of the input")
        if self.output_kind not in OUTPUT_KINDS:
            raise TargetError(f"task {self.name}: output_kind must be one of {', '.join(OUTPUT_KINDS)}, "
                              f"got {self.output_kind!r}")
        if not 1 <= self.min_len <= self.max_len:
            raise TargetError(
                f"task {self.name}: need 1 <= min_len <= max_len, got {self.min_len}, {self.max_len}"
            )
        object.__setattr__(self, "vocab", tuple(self.vocab))
        object.__setattr__(self, "output_vocab", tuple(self.output_vocab))
        if self.bos_in_input and self.bos is None:
            raise TargetError(f"task {self.name}: bos_in_input needs a bos token")
        specials = self.special_tokens
        values = list(specials.values())
        for kind, value in specials.items():
            if _known(value, dict.fromkeys(self.vocab)):
                raise TargetError(f"task {self.name}: the {kind} token {value!r} is also a vocabulary value")
            if values.count(value) > 1:
                raise TargetError(f"task {self.name}: the {kind} token {value!r} is also another special")

    # --- special tokens and framing -----------------------------------------------------------
    @property
    def special_tokens(self) -> dict[str, Hashable]:
        """{"bos" | "eos" | "sep" | "pad": value} for the special tokens the task has."""
        named = {"bos": self.bos, "eos": self.eos, "sep": self.sep, "pad": self.pad}
        return {k: v for k, v in named.items() if v is not None}

    @property
    def hidden_bos(self) -> bool:
        """Whether a BOS token sits before the input (model position 0, not seen by a program)."""
        return self.bos is not None and not self.bos_in_input

    @property
    def frame_size(self) -> int:
        """How many special tokens `frame` adds to the content."""
        return int(self.bos_in_input) + int(self.eos is not None)

    @property
    def max_input_len(self) -> int:
        """The longest framed input."""
        return self.max_len + self.frame_size

    def frame(self, content: Sequence[Any]) -> list:
        """The input for a content: visible BOS first and EOS last, where the task has them."""
        head = [self.bos] if self.bos_in_input else []
        tail = [self.eos] if self.eos is not None else []
        return head + list(content) + tail

    def content(self, x: Sequence[Any]) -> list:
        """The content of a framed input (TargetError when the framing is not there)."""
        x = list(x)
        if len(x) < self.frame_size:
            raise TargetError(f"task {self.name}: input {x!r} is shorter than its special tokens")
        if self.bos_in_input and x[0] != self.bos:
            raise TargetError(f"task {self.name}: input {x!r} does not start with BOS {self.bos!r}")
        if self.eos is not None and x[-1] != self.eos:
            raise TargetError(f"task {self.name}: input {x!r} does not end with EOS {self.eos!r}")
        return x[int(self.bos_in_input) : len(x) - int(self.eos is not None)]

    # --- inputs -----------------------------------------------------------------------------
    def in_domain(self, x: Sequence[Any]) -> bool:
        """Whether `x` is a framed input of this task (content in the vocabulary, the domain)."""
        try:
            body = self.content(x)
        except TargetError:
            return False
        allowed = set(self.vocab) | ({self.sep} if self.sep is not None else set())
        return (
            self.min_len <= len(body) <= self.max_len
            and all(_known(v, dict.fromkeys(allowed)) for v in body)
            and (self.domain is None or self.domain(body))
        )

    def _draw(self, rng: random.Random, length: int, generator: Generator | None) -> list:
        if generator is not None:
            return self.frame(generator(rng, length))
        for _ in range(10_000):
            x = [rng.choice(self.vocab) for _ in range(length)]
            if self.domain is None or self.domain(x):
                return self.frame(x)
        raise TargetError(f"task {self.name}: could not draw an input of length {length} in its domain")

    def sample(self, n: int, seed: int, length: int | None = None) -> list[list]:
        """`n` framed inputs, deterministic in `seed`; `length` fixes the content length."""
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
        """Every framed input whose content is vocabulary values in the domain, shortest first
        (vocab^length: keep lengths small; contents holding SEP come only from the generator)."""
        for length in range(self.min_len, (max_len or self.max_len) + 1):
            for x in itertools.product(self.vocab, repeat=length):
                if self.domain is None or self.domain(x):
                    yield self.frame(x)

    def every_input(self, limit: int) -> list[list] | None:
        """Every input of the task when there are at most `limit` candidates to walk, else None.

        The one rule for "enumerate when the space is small" (callers sample on None). A task with
        a generator has the generator's support, which `enumerate` cannot stand for, so it is
        always sampled; otherwise the candidates are vocab^length summed over the lengths.
        """
        if self.generator is not None:
            return None
        if sum(len(self.vocab) ** n for n in range(self.min_len, self.max_len + 1)) > limit:
            return None
        return list(self.enumerate())

    # --- outputs ----------------------------------------------------------------------------
    def read_positions(self, x: Sequence[Any]) -> list[int]:
        """Input positions of framed input `x` whose outputs the task reads (sorted, distinct)."""
        length = len(x)
        if self.readout is Readout.ALL:
            return list(range(length))
        if self.readout is Readout.LAST:
            return [length - 1]
        try:
            positions = sorted({int(i) for i in self.readout(list(x))})
        except TargetError:
            raise
        except (TypeError, ValueError, IndexError, KeyError) as e:  # a user's function: one line
            raise TargetError(f"task {self.name}: readout failed on {list(x)!r}: {e}") from None
        if positions and not (0 <= positions[0] and positions[-1] < length):
            msg = f"task {self.name}: readout of {list(x)!r} gives positions outside 0..{length - 1}"
            raise TargetError(msg)
        return positions

    def readout_positions(self, length: int) -> list[int]:
        """Read positions of any input of `length` (only for "all"/"last"; see read_positions)."""
        if self.readout is Readout.ALL:
            return list(range(length))
        if self.readout is Readout.LAST:
            return [length - 1]
        raise TargetError(f"task {self.name}: its readout depends on the input; use read_positions(x)")

    @property
    def readout_name(self) -> str:
        """"all", "last", or the readout function's name."""
        if isinstance(self.readout, Readout):
            return self.readout.value
        return getattr(self.readout, "__name__", "custom")

    def label(self, inputs: Sequence[Sequence[Any]]) -> list[list]:
        """True outputs per position (None where not read or undefined)."""
        out = []
        for x in inputs:
            y = list(self.labeller(list(x)))
            read = set(self.read_positions(x))
            out.append([v if i in read else None for i, v in enumerate(y)])
        return out


@dataclass(frozen=True, eq=False)
class Target:
    """A network, its task, its input/output encoding and (when known) its ground truth.

    `input_ids` maps token values (the vocabulary and every special token the task has)
    to token ids. `output_values[j]` is the decoded value of logit column j (categorical
    outputs); numerical outputs are read from column `numeric_column`. `info` holds
    provenance (kind, accuracy, training time, ...), shown by `models.list_targets`.
    """

    name: str
    model: TransformerBridge = field(repr=False)
    task: Task
    input_ids: Mapping[Any, int] = field(repr=False)
    output_values: tuple = field(default=(), repr=False)
    ground_truth: Hypothesis | None = field(default=None, repr=False)
    numeric_column: int = 0
    info: Mapping[str, Any] = field(default_factory=dict, repr=False)
    first_position_id: int = 0

    def __post_init__(self) -> None:
        if self.first_position_id:
            shifted = _position_ids_from(self.model, self.first_position_id, self.name)
            object.__setattr__(self, "model", shifted)
        object.__setattr__(self, "input_ids", MappingProxyType(dict(self.input_ids)))
        object.__setattr__(self, "output_values", tuple(self.output_values))
        object.__setattr__(self, "info", MappingProxyType(dict(self.info)))
        missing = [v for v in self.task.vocab if v not in self.input_ids]
        if missing:
            raise TargetError(f"target {self.name}: vocabulary value {missing[0]!r} has no token id")
        for kind, value in self.task.special_tokens.items():
            if value not in self.input_ids:
                raise TargetError(f"target {self.name}: {kind.upper()} value {value!r} has no token id")
        d_vocab_out = self.model.cfg.d_vocab_out
        if self.task.output_kind != "numerical" and len(self.output_values) != d_vocab_out:
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

    # --- device -----------------------------------------------------------------------------
    @property
    def device(self) -> torch.device:
        """Where the network's weights live; the engine makes its tensors there (`models.device`)."""
        from mechsynth.models.device import module_device

        return module_device(self.model)

    def on(self, device: str | torch.device | None) -> Target:
        """This target with its network on ``device`` (``auto``/None: cuda when available, else
        cpu). The same target when it is already there; otherwise a copy whose network was moved,
        so the original (shared, read-only) network stays where it is. DeviceError (one line) for
        a device this machine does not have."""
        import copy
        import dataclasses

        from mechsynth.models.device import resolve_device, same_device

        wanted = resolve_device(device)
        if same_device(self.device, wanted):
            return self
        model = copy.deepcopy(self.model).to(wanted)
        return dataclasses.replace(self, model=model)

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
        return 1 if self.task.hidden_bos else 0

    @property
    def padded(self) -> bool:
        """Whether inputs of different lengths share a batch (the task has a PAD token)."""
        return self.task.pad is not None

    def readout_positions(self, length: int) -> list[int]:
        return self.task.readout_positions(length)

    def read_positions(self, x: Sequence[Any]) -> list[int]:
        return self.task.read_positions(x)

    # --- encoding ---------------------------------------------------------------------------
    def tokens(self, inputs: Sequence[Sequence[Any]]) -> torch.Tensor:
        """Token ids [B, T] for framed inputs (a hidden BOS first when the task has one).

        Inputs must share one length unless the task has a PAD token; then shorter inputs
        are padded on the right to the longest (see `attention_mask`). On the target's device.
        """
        if not inputs:
            raise TargetError(f"target {self.name}: no inputs")
        lengths = [len(x) for x in inputs]
        longest = max(lengths)
        if not self.padded and any(n != longest for n in lengths):
            raise TargetError(
                f"target {self.name}: tokens() needs inputs of one length (group by length; "
                "the task has no pad token)"
            )
        limit = self.task.max_input_len
        if not 1 <= min(lengths) or longest > limit:
            bad = next(n for n in lengths if not 1 <= n <= limit)
            raise TargetError(f"target {self.name}: input length {bad} outside 1..{limit}")
        prefix = [self.input_ids[self.task.bos]] if self.task.hidden_bos else []
        pad_id = self.input_ids[self.task.pad] if self.padded else None
        rows = []
        for x in inputs:
            try:
                ids = [self.input_ids[v] for v in x]
            except (KeyError, TypeError):
                bad = next(v for v in x if not _known(v, self.input_ids))
                msg = f"target {self.name}: {bad!r} is not in the vocabulary {self.vocab}"
                raise TargetError(msg) from None
            rows.append(prefix + ids + [pad_id] * (longest - len(x)))
        return torch.tensor(rows, dtype=torch.long, device=self.device)

    def attention_mask(self, inputs: Sequence[Sequence[Any]]) -> torch.Tensor | None:
        """[B, T] key mask (1 = a real token, 0 = PAD) for a mixed-length batch; None when no
        input is padded (then the model runs exactly as without a mask)."""
        lengths = [len(x) for x in inputs]
        longest = max(lengths)
        if all(n == longest for n in lengths):
            return None
        off = self.position_offset
        positions = torch.arange(off + longest, device=self.device)
        return (positions[None, :] < torch.tensor(lengths, device=self.device)[:, None] + off).long()

    def run_model(self, tokens: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        """Logits for token ids, with the key mask when there is one (see the module docstring)."""
        with torch.no_grad():
            if mask is None:
                return self.model(tokens)
            return self.model(tokens, attention_mask=mask)

    def logits(self, inputs: Sequence[Sequence[Any]]) -> torch.Tensor:
        """Network logits [B, T, d_vocab_out] for framed inputs (mixed lengths only with PAD)."""
        return self.run_model(self.tokens(inputs), self.attention_mask(inputs))

    def decode(self, logits: torch.Tensor, inputs: Sequence[Sequence[Any]]) -> list[list]:
        """Decoded outputs per input position (None where the task does not read)."""
        off = self.position_offset
        out = []
        kind = self.task.output_kind
        if kind == "categorical":
            ids = logits.argmax(-1).tolist()
        elif kind == "multilabel":  # a BCE head: label j is on where its logit is positive
            on = (logits > 0).tolist()
        else:
            values = logits[..., self.numeric_column].tolist()
        for b, x in enumerate(inputs):
            row: list = [None] * len(x)
            for i in self.read_positions(x):
                if kind == "categorical":
                    row[i] = self.output_values[ids[b][i + off]]
                elif kind == "multilabel":
                    flags = on[b][i + off]
                    row[i] = tuple(v for v, f in zip(self.output_values, flags) if f)
                else:
                    row[i] = values[b][i + off]
            out.append(row)
        return out

    def predict(self, inputs: Sequence[Sequence[Any]], batch_size: int = 1024) -> list[list]:
        """The network's decoded outputs for inputs of any lengths: one padded batch per chunk
        when the task has a PAD token, else grouped by length."""
        batches: dict[int, list[int]] = {}
        for i, x in enumerate(inputs):
            batches.setdefault(0 if self.padded else len(x), []).append(i)
        out: list[list] = [[] for _ in inputs]
        for idx in batches.values():
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


_SHIFT_ATTR = "_mechsynth_first_position_id"


def _position_ids_from(model: Any, first: int, name: str) -> Any:
    """The network whose position p is embedded as position id ``first + p``.

    Networks trained with position ids starting at an offset must be fed
    ``position_ids = arange(T) + first``. Every forward pass the engine makes (clean, patched,
    controls) goes through ``model(tokens)``, so rather than threading position ids through
    each call we give the target a copy of the network whose positional table is the original
    table from row ``first`` on: ``W_pos'[p] = W_pos[first + p]``. That is the same function
    (`tests/models/test_first_position_id.py` compares it with the original network fed those
    position ids), and hooks, locations and patching are unchanged. The copy is made once (a
    copy already shifted, e.g. by `Target.on`, is recognised and kept).
    """
    import copy

    if not isinstance(first, int) or isinstance(first, bool) or first < 0:
        raise TargetError(f"target {name}: first_position_id must be a non-negative integer, got {first!r}")
    done = getattr(model, _SHIFT_ATTR, 0)
    if done == first:
        return model
    if done:
        raise TargetError(f"target {name}: its network is already shifted to position id {done}")
    n_ctx = int(model.cfg.n_ctx)
    if first >= n_ctx:
        raise TargetError(f"target {name}: first_position_id {first} leaves no positions (n_ctx={n_ctx})")
    shifted = copy.deepcopy(model)
    with torch.no_grad():
        table = shifted.W_pos
        table[: n_ctx - first] = table[first:].clone()
    shifted.cfg.n_ctx = n_ctx - first
    object.__setattr__(shifted, _SHIFT_ATTR, first)
    return shifted


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
