"""The LLM proposer's prompt, built from the registry, the target and the run so far.

Nothing in the prompt is written per target. It has three parts, in the order the
Messages API caches prefixes:

1. **Static** (system block, cached): what a hypothesis is, the DSL reference generated
   by ``dsl.reference()`` from the registry (so user-registered primitives and function
   families appear with no edit here), the hypothesis-file syntax, how locations name
   TransformerLens hooks, and the answer format. Identical for every target and run.
2. **Target** (second system block, cached): the architecture read from the model's
   config and weights (layers, heads, which components are all-zero, the hook names a
   correspondence may use), the task (vocabulary, lengths, BOS, readout), example
   inputs with the *network's* outputs (marked where they differ from the task labels:
   the hypothesis must explain the network, mistakes included), and what observation
   found per layer (attention summaries). Identical for every call of one run.
3. **Feedback** (user message, not cached): the round, the best candidates so far with
   their scores, failures and counterexamples, this proposer's earlier candidates that
   were rejected before scoring with the reason, and the request for new candidates.

The ground truth of a target is never read here: the prompt must not leak the answer.
Observations are read through :func:`observation_lines`, an adapter that uses what the
observe stage provides and skips what it does not.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from collections.abc import Iterable, Mapping, Sequence
from mechsynth.dsl.location import act_name

if TYPE_CHECKING:
    from mechsynth.models import Target
    from mechsynth.synth.propose.interface import ScoredCandidate

# A hypothesis in the answer format, checked by the tests to parse with the current DSL, so
# the prompt never teaches a syntax the parser rejects.
EXAMPLE_HYPOTHESIS = """\
program:
    prev = select(indices, map(add(-1), indices), EQ)
    shifted = aggregate(prev, tokens)
correspondence:
    shifted: blocks.0.attn.hook_z[0]
"""

_ROLE = """\
You are a mechanistic-interpretability researcher. A small transformer has been trained or compiled
to compute a function on token sequences. Your job is to propose HYPOTHESES about HOW THIS NETWORK
computes its outputs: a program in a RASP-like DSL whose intermediate variables are claimed to be
computed by specific attention heads and MLPs. Each hypothesis is checked automatically against the
network's own activations (behaviour match, causal scrubbing, interchange interventions) and against
controls, so a program that is merely correct for the task but does not match how the network
computes scores poorly. Explain the NETWORK's outputs, including any mistakes it makes."""

_FORMAT = """\
A hypothesis has a `program:` section (DSL assignments, one per line, indented; the LAST assignment
is the output) and an optional `correspondence:` section mapping program variables to locations,
one `variable: location` per line. Lines starting with `#` are comments. Example (illustrative only,
not a hint about this network):

{example}
Locations are TransformerLens hook names, optionally narrowed:
- `blocks.L.attn.hook_z[h]`: the output of head h of layer L. A variable computed by an `aggregate`
  lives at the head that performs it; selectors get no location (they belong to their aggregate).
- `blocks.L.hook_mlp_out`: the output of the MLP of layer L, for variables computed by `map`/`seqmap`
  (optionally `[dims=i,j,...]` to name residual-stream dimensions; leave dims out if unsure).
- `hook_embed` holds `tokens` and `hook_pos_embed` holds `indices`; you do not need to list them.
Within a layer the attention reads the residual stream before the MLP of the same layer, so a
variable used by an attention head of layer L must be computed in an earlier layer (or be a
primitive), and a variable used by the MLP of layer L may come from the attention of layer L.
The correspondence may be partial or empty; the engine then searches locations itself."""

_ANSWER = """\
Answer with {n} distinct candidate hypotheses, most likely first. Put each in its own fenced block
tagged `hypothesis`:

```hypothesis
program:
    ...
correspondence:
    ...
```

Use only the primitives, functions and predicates listed in the DSL reference. Prefer the simplest
program consistent with the observations; different candidates should differ in structure or in
where variables live, not only in variable names. A sentence of reasoning before each block is
welcome; everything outside the fenced blocks is ignored."""


@dataclass(frozen=True)
class PromptParts:
    """The three parts of one request (see module docstring)."""

    static: str
    target: str
    feedback: str

    def system_blocks(self) -> list[dict[str, Any]]:
        """The Messages API ``system`` value: both stable parts, each ending a cached prefix."""
        return [
            {"type": "text", "text": self.static, "cache_control": {"type": "ephemeral"}},
            {"type": "text", "text": self.target, "cache_control": {"type": "ephemeral"}},
        ]

    def messages(self) -> list[dict[str, Any]]:
        return [{"role": "user", "content": [{"type": "text", "text": self.feedback}]}]

    def render(self) -> str:
        """The whole prompt as one text (for reports and the sample in the docs)."""
        return "\n\n".join(
            [
                "=== system (static, cached) ===",
                self.static,
                "=== system (target, cached) ===",
                self.target,
                "=== user ===",
                self.feedback,
            ]
        )


@dataclass(frozen=True)
class Probe:
    """Inputs with the network's outputs on them, to show where a candidate program disagrees.

    The loop's scored candidates may come without counterexamples; the proposer finds its
    own by running each candidate program (the DSL interpreter, never ``eval``) on these
    inputs and comparing with the network at the positions the task reads.
    """

    inputs: tuple[tuple[Any, ...], ...]
    outputs: tuple[tuple[Any, ...], ...]
    output_kind: str

    @classmethod
    def sample(cls, target: Target, *, n: int = 64, seed: int = 0) -> Probe:
        seen: dict[tuple[Any, ...], None] = {}
        for x in target.task.sample(n, seed + 7):
            seen.setdefault(tuple(x), None)
        inputs = list(seen)
        outputs = target.predict([list(x) for x in inputs])
        return cls(tuple(inputs), tuple(tuple(y) for y in outputs), target.task.output_kind)

    def disagreements(self, program: Any, limit: int = 3) -> tuple[list[dict[str, Any]], int] | None:
        """Up to ``limit`` inputs where the program's output differs from the network's, and how
        many inputs agree; None when the program cannot be evaluated on these inputs."""
        from mechsynth.dsl import DSLError, evaluate

        try:
            got = evaluate(program, [list(x) for x in self.inputs])
        except (DSLError, ValueError, TypeError):
            return None
        found: list[dict[str, Any]] = []
        agree = 0
        for x, net, mine in zip(self.inputs, self.outputs, got):
            if _same(net, mine, self.output_kind, read_only=True):
                agree += 1
            elif len(found) < limit:
                found.append({"input": list(x), "network": list(net), "program": list(mine)})
        return found, agree


# --- part 1: static -------------------------------------------------------------------------------


def static_prompt(n_candidates: int) -> str:
    """Role, DSL reference (from the registry), hypothesis syntax, answer format."""
    from mechsynth.dsl import reference

    return "\n\n".join(
        [
            _ROLE,
            "# The DSL\n\n" + reference().strip(),
            "# Hypothesis format\n\n" + _FORMAT.format(example=_indent(EXAMPLE_HYPOTHESIS, 4)),
            "# Your answer\n\n" + _ANSWER.format(n=n_candidates),
        ]
    )


# --- part 2: the target ---------------------------------------------------------------------------


def target_prompt(target: Target, observations: Any = None, *, n_examples: int = 12, seed: int = 0) -> str:
    """Architecture, task, examples of the network's behaviour, per-layer observations."""
    sections = [
        "# The network\n\n" + "\n".join(architecture_lines(target)),
        "# The task\n\n" + "\n".join(task_lines(target)),
        "# What the network outputs\n\n" + "\n".join(example_lines(target, n=n_examples, seed=seed)),
    ]
    obs = observation_lines(observations, skip=_unused_components(target))
    if obs:
        sections.append("# Observations per layer\n\n" + "\n".join(obs))
    return "\n\n".join(sections)


def architecture_lines(target: Target) -> list[str]:
    """Shape of the model from its config; components whose weights are all zero are named as unused."""
    cfg = target.model.cfg
    n_layers, n_heads = int(cfg.n_layers), int(cfg.n_heads)
    attn_dir = getattr(cfg, "attention_dir", "causal")
    lines = [
        f"- {n_layers} layer(s), each an attention layer with {n_heads} head(s) followed by an MLP; "
        f"d_model={cfg.d_model}, d_head={cfg.d_head}, d_mlp={getattr(cfg, 'd_mlp', '?')}, "
        f"activation={getattr(cfg, 'act_fn', '?')}, "
        f"normalization={getattr(cfg, 'normalization_type', None)}.",
        f"- Attention is {attn_dir}"
        + (" (every position can attend to every position)." if attn_dir == "bidirectional" else "."),
    ]
    unused = _unused_components(target)
    if unused:
        lines.append("- All-zero (unused) components: " + ", ".join(unused) + ".")
    lines.append("- Locations a correspondence may use:")
    lines.append("  hook_embed (tokens), hook_pos_embed (indices)")
    for layer in range(n_layers):
        heads = ", ".join(f"{act_name('z', layer)}[{h}]" for h in range(n_heads))
        lines.append(f"  layer {layer}: {heads}; {act_name('mlp_out', layer)}")
    return lines


def _unused_components(target: Target) -> list[str]:
    # tracr pads heads and layers with zero weights; telling the model which components are
    # empty saves it from placing variables there. Read-only access to weights; failures are
    # not fatal (some bridges do not expose per-head weights).
    out: list[str] = []
    try:
        import torch

        with torch.no_grad():
            for layer, block in enumerate(target.model.blocks):
                w_o = block.attn.W_O  # [head, d_head, d_model]
                for h in range(w_o.shape[0]):
                    if float(w_o[h].abs().max()) == 0.0:
                        out.append(f"{act_name('z', layer)}[{h}]")
                if float(block.mlp.W_out.abs().max()) == 0.0:
                    out.append(act_name("mlp_out", layer))
    except Exception:  # noqa: BLE001 - architecture notes are a hint, never a failure
        return []
    return out


def task_lines(target: Target) -> list[str]:
    task = target.task
    lines = [f"- Name: {task.name}"]
    if getattr(task, "description", ""):
        lines.append(f"- Description: {task.description}")
    lines += [
        f"- Input vocabulary (the values of `tokens`): {_short(list(task.vocab), 300)}",
        f"- Input lengths: {task.min_len}..{task.max_len}; `indices` are 0-based input positions and "
        f"`length` is the input length.",
    ]
    if task.bos is not None and not task.bos_in_input:
        lines.append(
            f"- The model sees a BOS token ({task.bos!r}) before the input; it is not part of `tokens` and "
            "attention to it usually means 'attend nowhere'. Positions below are input positions."
        )
    visible = {"bos": task.bos_in_input, "eos": True, "sep": True, "pad": False}
    specials = {k: v for k, v in task.special_tokens.items() if visible[k]}
    if specials:
        named = ", ".join(f"{k.upper()} = {v!r}" for k, v in specials.items())
        lines.append(
            f"- Special tokens that are values of `tokens` ({named}): BOS is the first input position, "
            f"EOS the last, SEP where the task puts it; the lengths above do not count BOS and EOS "
            f"(inputs are {task.frame_size} longer)."
        )
    readout = {"all": "every position", "last": "only the last position"}.get(
        task.readout_name, f"the positions chosen by `{task.readout_name}` (see the examples)"
    )
    kind = task.output_kind
    lines.append(f"- Output: {kind}, read at {readout}.")
    if kind == "categorical" and getattr(task, "output_vocab", ()):
        lines.append(f"- Output values: {_short(list(task.output_vocab), 300)}")
    return lines


def example_lines(target: Target, *, n: int, seed: int) -> list[str]:
    """Distinct inputs of every length with the network's outputs, marked where the labels differ."""
    task = target.task
    # Round-robin over lengths, longest first: long inputs say the most, short ones show edge cases.
    pools = []
    for length in range(task.max_len, task.min_len - 1, -1):
        seen: dict[tuple, None] = {}
        for x in task.sample(n, seed + 1009 * length, length=length):
            seen.setdefault(tuple(x), None)
        pools.append(list(seen))
    inputs: list[list[Any]] = []
    while len(inputs) < n and any(pools):
        for pool in pools:
            if pool and len(inputs) < n:
                inputs.append(list(pool.pop(0)))
    outputs = target.predict(inputs)
    labels = task.label(inputs)
    lines = []
    wrong = 0
    for x, y, t in zip(inputs, outputs, labels):
        line = f"{_fmt_seq(x)} -> {_fmt_seq(y)}"
        if not _same(y, t, task.output_kind):
            wrong += 1
            line += f"   (task label {_fmt_seq(t)}: the network is wrong here)"
        lines.append(line)
    header = "Input -> the network's output (None = position not read)."
    if wrong:
        header += f" The network disagrees with the task labels on {wrong} of {len(inputs)} examples."
    return [header, *lines]


# --- observations adapter --------------------------------------------------------------------------


def observation_lines(observations: Any, *, max_heads: int = 32, skip: Sequence[str] = ()) -> list[str]:
    """Per-layer text summaries from whatever the observe stage provides.

    Uses, when present: ``observations.describe()`` (a ready summary), ``groups`` with
    ``patterns``/``bos``/``inputs`` (synth.observe.Observations: attention summaries are
    computed here), and ``decodable`` (``{layer: [variable names]}`` or records with
    ``layer``/``variable``). Anything missing is skipped; nothing here raises.
    """
    if observations is None:
        return []
    describe = getattr(observations, "describe", None)
    if callable(describe):
        try:
            text = describe()
            if isinstance(text, str) and text.strip():
                return text.strip().splitlines()
        except Exception:  # noqa: BLE001 - fall back to the fields we know
            pass
    lines: list[str] = []
    try:
        lines += _attention_lines(observations, max_heads=max_heads, skip=set(skip))
    except Exception:  # noqa: BLE001 - an unexpected layout loses the summary, not the run
        pass
    lines += _decodable_lines(getattr(observations, "decodable", None))
    return lines


def _attention_lines(obs: Any, *, max_heads: int, skip: set[str]) -> list[str]:
    groups = list(getattr(obs, "groups", ()) or ())
    if not groups or not getattr(groups[0], "patterns", None):
        return []
    n_layers = len(groups[0].patterns)
    n_heads = int(groups[0].patterns[0].shape[1])
    lines = ["Attention heads (what each query position attends to, over all observed inputs):"]
    shown = 0
    for layer in range(n_layers):
        for head in range(n_heads):
            if f"{act_name('z', layer)}[{head}]" in skip:
                continue  # all-zero head: its pattern is meaningless
            if shown >= max_heads:
                lines.append("  (more heads omitted)")
                return lines
            summary = _describe_head(groups, layer, head)
            if summary:
                lines.append(f"  L{layer} head {head}: {summary}")
                shown += 1
    return lines if shown else []


def _describe_head(groups: Sequence[Any], layer: int, head: int) -> str:
    """A short description of one head: BOS weight, positional map if there is one, content tests.

    A query row whose weight is mostly on BOS "attends nowhere" (tracr's convention for an
    empty selection); the positional and content tests look at the other, *live*, rows.
    """
    bos_mass, total = 0.0, 0
    positional: list[str] = []
    is_positional = True
    content_hits: Counter[str] = Counter()
    content_rows = 0
    for g in groups:
        p = g.patterns[layer][:, head]  # [batch, q, k] over input positions
        if p.numel() == 0:
            continue
        b = g.bos[layer][:, head]  # [batch, q]
        bos_mass += float(b.sum())
        total += b.numel()
        live = b < 0.5
        # Positional: at each query position, every input attends to the same single key (or all
        # attend to BOS).
        argmax, peak = p.argmax(-1), p.amax(-1)
        row_map = []
        for q in range(g.length):
            if not bool(live[:, q].any()):
                row_map.append(f"{q}->BOS")
            elif (
                bool(live[:, q].all())
                and bool((argmax[:, q] == argmax[0, q]).all())
                and bool((peak[:, q] > 0.5).all())
            ):
                row_map.append(f"{q}->{int(argmax[0, q])}")
            else:
                is_positional = False
                break
        if is_positional and bool(live.any()):
            positional.append(f"len {g.length}: " + " ".join(row_map))
        # Content: which simple relations over tokens/indices give the support of the pattern.
        support = p > 0.5 * p.amax(-1, keepdim=True).clamp_min(1e-9)  # [batch, q, k]
        content_rows += int(live.sum())
        for name, sel in _primitive_selectors(g).items():
            content_hits[name] += int(((support == sel).all(-1) & live).sum())
    if total == 0:
        return ""
    parts = []
    bos_frac = bos_mass / total
    if bos_frac > 0.05:
        parts.append(f"{bos_frac:.0%} of attention on BOS")
    if is_positional and positional:
        parts.append("positional, query->key " + "; ".join(positional[-2:]))
    if content_rows:
        ranked = [(name, hits / content_rows) for name, hits in content_hits.most_common() if hits]
        exact = [(name, frac) for name, frac in ranked if frac >= 0.9][:3]
        if exact:
            parts.append("attends to " + ", ".join(f"[{name}] on {frac:.0%} of rows" for name, frac in exact))
        elif ranked and ranked[0][1] >= 0.5:
            parts.append(f"partly [{ranked[0][0]}] ({ranked[0][1]:.0%} of rows)")
    if not parts or parts == [f"{bos_frac:.0%} of attention on BOS"]:
        parts.append("content-dependent pattern (no simple positional or token/index rule found)")
    return "; ".join(parts)


# Comparisons as the DSL names them, applied as pred(key, query).
_PREDICATES = {
    "EQ": lambda k, q: k == q,
    "NEQ": lambda k, q: k != q,
    "LT": lambda k, q: k < q,
    "LEQ": lambda k, q: k <= q,
    "GT": lambda k, q: k > q,
    "GEQ": lambda k, q: k >= q,
}


def _primitive_selectors(group: Any) -> dict[str, Any]:
    """Selector matrices ``[batch, q, k]`` of predicates over tokens and indices, in words."""
    import torch

    n, batch = group.length, len(group.inputs)
    idx = torch.arange(n, dtype=torch.float32)
    out: dict[str, Any] = {"every key (TRUE)": torch.ones(batch, n, n, dtype=torch.bool)}
    try:
        tok = torch.tensor([[float(v) for v in x] for x in group.inputs])
        token_preds = tuple(_PREDICATES)
    except (TypeError, ValueError):
        # Symbols have no order: only (in)equality of tokens is meaningful.
        codes = {v: i for i, v in enumerate(sorted({v for x in group.inputs for v in x}, key=repr))}
        tok = torch.tensor([[codes[v] for v in x] for x in group.inputs], dtype=torch.float32)
        token_preds = ("EQ", "NEQ")
    for pred, fn in _PREDICATES.items():
        out[f"keys with index {pred} query index"] = fn(idx[None, :], idx[:, None]).expand(batch, n, n)
        if pred in token_preds:
            out[f"keys with token {pred} query token"] = fn(tok[:, None, :], tok[:, :, None])
    # Fixed offsets and the mirror image are the positional relations heads most often compute.
    for c in (-2, -1, 1, 2):
        name = f"key index = query index {'+' if c > 0 else '-'} {abs(c)}"
        out[name] = (idx[None, :] == idx[:, None] + c).expand(batch, n, n)
    out["key index = length - 1 - query index"] = (idx[None, :] == n - 1 - idx[:, None]).expand(batch, n, n)
    return out


def _decodable_lines(decodable: Any) -> list[str]:
    if not decodable:
        return []
    by_layer: dict[Any, list[str]] = {}
    if isinstance(decodable, Mapping):
        for layer, names in decodable.items():
            by_layer[layer] = [str(n) for n in (names if isinstance(names, Iterable) else [names])]
    else:
        for rec in decodable:
            layer = getattr(rec, "layer", None) if not isinstance(rec, Mapping) else rec.get("layer")
            name = getattr(rec, "variable", None) if not isinstance(rec, Mapping) else rec.get("variable")
            if name is not None:
                by_layer.setdefault(layer, []).append(str(name))
    if not by_layer:
        return []
    lines = ["Variables decodable from the residual stream:"]
    lines += [f"  before layer {layer}: {', '.join(names)}" for layer, names in by_layer.items()]
    return lines


# --- part 3: feedback and request -----------------------------------------------------------------


def feedback_prompt(
    best: Sequence[ScoredCandidate],
    rejected: Sequence[tuple[str, str]],
    *,
    round: int,
    n_candidates: int,
    probe: Probe | None = None,
    max_best: int = 5,
    max_rejected: int = 6,
) -> str:
    """The per-call user message: what was tried and how it scored, then the request.

    Candidates scored without counterexamples get some from ``probe`` when one is given.
    """
    parts: list[str] = []
    if not best and not rejected:
        parts.append(
            "No hypotheses have been scored yet. Study the network, the task, the examples and the "
            "observations above."
        )
    else:
        parts.append(f"Refinement round {round}. Improve on what was tried so far; do not repeat it.")
    if best:
        parts.append("## Best candidates scored so far")
        for i, cand in enumerate(list(best)[:max_best], 1):
            parts.append(_candidate_feedback(i, cand, probe))
    if rejected:
        parts.append("## Your earlier candidates that were rejected before scoring")
        for text, reason in list(rejected)[-max_rejected:]:
            parts.append(f"- reason: {reason}\n" + _indent(_short(text.strip(), 400), 2).rstrip())
    parts.append(f"Propose {n_candidates} new candidate hypotheses in the answer format.")
    return "\n\n".join(parts)


def _candidate_feedback(i: int, cand: ScoredCandidate, probe: Probe | None = None) -> str:
    status = "ACCEPTED" if cand.accepted else "not accepted"
    lines = [
        f"### Candidate {i} (from {cand.source}, {status})",
        "```hypothesis",
        str(cand.hypothesis).rstrip(),
        "```",
    ]
    scores = _score_items(cand.scores)
    if scores:
        lines.append("Scores: " + ", ".join(f"{k}={v}" for k, v in scores))
    if cand.failure:
        lines.append(f"Failure: {cand.failure}")
    examples = list(cand.counterexamples or ())[:3]
    if not examples and probe is not None and not cand.accepted:
        found = probe.disagreements(cand.hypothesis.program)
        if found is not None:
            examples, agree = found
            if not examples:
                lines.append(
                    f"Its outputs equal the network's on all {agree} sampled inputs: what fails is where "
                    "the intermediate variables live or how they are computed, not the output."
                )
    if examples:
        lines.append("Counterexamples (where the program and the network disagree):")
        lines += [f"- {_counterexample(c)}" for c in examples]
    return "\n".join(lines)


def _score_items(scores: Mapping[str, Any], limit: int = 10) -> list[tuple[str, str]]:
    # Scores may carry per-input arrays; only scalar numbers are useful in a prompt.
    out = []
    for k, v in scores.items():
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            try:
                v = float(v)  # 0-d tensors / numpy scalars
            except (TypeError, ValueError):
                continue
        out.append((str(k), f"{v:.3g}"))
        if len(out) >= limit:
            break
    return out


def _counterexample(c: Any) -> str:
    if isinstance(c, Mapping):
        known = [("input", "input"), ("network", "network output"), ("program", "program output")]
        if any(k in c for k, _ in known):
            items = [f"{label} {_fmt_seq(c[k])}" for k, label in known if k in c]
            items += [f"{k} {_short(v, 80)}" for k, v in c.items() if k not in dict(known)]
            return "; ".join(items)
        return _short(dict(c), 200)
    if isinstance(c, (list, tuple)):
        return "input " + _fmt_seq(c)
    return _short(c, 200)


# --- formatting helpers --------------------------------------------------------------------------


def _same(a: Any, b: Any, kind: str, *, read_only: bool = False) -> bool:
    """Outputs agree position by position; ``read_only`` ignores positions the network does not read."""
    from mechsynth.models.target import outputs_equal

    if len(a) != len(b):
        return False
    return all(read_only and x is None or outputs_equal(x, y, kind) for x, y in zip(a, b))


def _fmt_seq(x: Any) -> str:
    if isinstance(x, (list, tuple)):
        return "[" + ", ".join(_fmt_value(v) for v in x) + "]"
    return _fmt_value(x)


def _fmt_value(v: Any) -> str:
    if isinstance(v, float):
        # Numerical readouts carry float noise (1e-17 for 0): three decimals say what matters.
        if abs(v) >= 1e6:
            return f"{v:.3g}"
        v = round(v, 3) + 0.0  # + 0.0 turns -0.0 into 0.0
        return f"{v:.3f}".rstrip("0").rstrip(".")
    return repr(v) if isinstance(v, str) else str(v)


def _short(value: Any, limit: int) -> str:
    text = value if isinstance(value, str) else str(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _indent(text: str, n: int) -> str:
    pad = " " * n
    return "\n".join(pad + line if line.strip() else line for line in text.splitlines()) + "\n"
