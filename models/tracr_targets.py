"""tracr targets: RASP programs compiled to transformer weights, converted to TransformerLens.

tracr (Lindner et al. 2023) compiles a RASP program into a transformer whose weights
implement the program exactly, and labels every residual-stream dimension with the RASP
variable (and value) it holds. That makes tracr networks the ground-truth targets of
mechsynth: we know the program and where each variable lives.

Stages (each a function below):

1. `compile_program`: run tracr's compiler passes (RASP -> graph -> value sets ->
   craft blocks -> layer allocation -> assembled haiku model). We call the passes
   ourselves instead of `compile_rasp_to_model` only to keep the annotated graph,
   which ground truth needs (each variable's output basis).
2. `tracr_state_dict`: copy the haiku parameters into the TransformerLens layout
   (W_E, W_pos, per-head W_Q/K/V/O, MLP W_in/W_out, biases). The unembedding is not a
   parameter in tracr; it is recovered by unembedding the identity matrix.
3. `compile_rasp` / `tracr_target`: build the `TransformerBridge` (bidirectional
   attention unless compiled causal, no normalisation, relu) and the `Task` whose true
   outputs are the RASP program's own outputs (`rasp.evaluate`).

`tracr_predict` runs tracr's own forward pass; tests use it to check that the converted
network gives tracr's outputs on every input up to the maximum length.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from collections.abc import Callable, Iterable, Mapping, Sequence

import numpy as np

from mechsynth.models.bridge import build_bridge
from mechsynth.models.target import Domain, Target, TargetError, Task

if TYPE_CHECKING:
    import networkx as nx
    from tracr.compiler.assemble import AssembledTransformerModel
    from tracr.rasp import rasp

COMPILER_BOS = "BOS"
COMPILER_PAD = "compiler_pad"


@dataclass(frozen=True)
class TracrExample:
    """One program of `tracr.compiler.lib` with the vocabulary and length it is compiled for."""

    name: str
    build: Callable[[], rasp.SOp]
    vocab: tuple
    max_len: int
    bos: str = "BOS"
    domain: Domain | None = None  # inputs on which the program is meant to be used
    description: str = ""


def _unique_tokens(x: Sequence[Any]) -> bool:
    # make_sort_unique is only defined when the sort keys (here the tokens) are distinct.
    return len(set(x)) == len(x)


def _examples() -> dict[str, TracrExample]:
    from tracr.compiler import lib
    from tracr.rasp import rasp

    def nary() -> rasp.SOp:
        return lib.make_nary_sequencemap(lambda x, y, z: x + y - z, rasp.tokens, rasp.tokens, rasp.indices)

    abc = ("a", "b", "c")
    rows = [
        TracrExample("length", lib.make_length, abc, 5, description="length of the input at every position"),
        TracrExample("reverse", lambda: lib.make_reverse(rasp.tokens), abc, 5,
                     description="reverse the input"),
        TracrExample("hist", lib.make_hist, abc, 5, description="count of the current token in the input"),
        TracrExample("sort_unique", lambda: lib.make_sort_unique(rasp.tokens, rasp.tokens),
                     (1, 2, 3, 4, 5), 5, domain=_unique_tokens, description="sort distinct tokens"),
        TracrExample("sort", lambda: lib.make_sort(rasp.tokens, rasp.tokens, max_seq_len=5, min_key=1),
                     (1, 2, 3, 4), 5, description="sort tokens (ties broken by position)"),
        TracrExample("sort_freq", lambda: lib.make_sort_freq(max_seq_len=5), (1, 2, 3, 4), 5,
                     description="tokens sorted by decreasing frequency"),
        TracrExample("frac_prevs", lambda: lib.make_frac_prevs(rasp.tokens == "a"), abc, 5,
                     description="fraction of positions so far holding 'a'"),
        TracrExample("pair_balance", lambda: lib.make_pair_balance(rasp.tokens, "(", ")"), ("(", ")", "x"), 5,
                     description="fraction of '(' minus fraction of ')' so far"),
        TracrExample("shuffle_dyck", lambda: lib.make_shuffle_dyck(["()"]), ("(", ")", "x"), 5,
                     description="1 iff the parentheses are balanced"),
        TracrExample("shuffle_dyck2", lib.make_shuffle_dyck2, ("(", ")", "{", "}"), 5,
                     description="1 iff both kinds of brackets are balanced (shuffled)"),
        TracrExample("shift_by", lambda: lib.shift_by(1, rasp.tokens), abc, 5,
                     description="the previous token"),
        TracrExample("detect_pattern", lambda: lib.detect_pattern(rasp.tokens, "abc"), abc, 5,
                     description="True at the end of each occurrence of 'abc'"),
        TracrExample("count_less_freq", lambda: lib.make_count_less_freq(2), ("a", "b", "c", "d"), 5,
                     description="number of positions whose token occurs at most twice"),
        TracrExample("count", lambda: lib.make_count(rasp.tokens, "a"), abc, 5,
                     description="number of 'a' tokens"),
        TracrExample("nary_sequencemap", nary, (1, 2, 3), 5, description="tokens + tokens - indices"),
    ]
    return {row.name: row for row in rows}


@functools.cache
def lib_examples() -> Mapping[str, TracrExample]:
    """The 15 tracr lib examples by target name (shared with the DSL's tracr bridge when present)."""
    return _examples_from_dsl() or _examples()


# Examples whose DSL-list variant tracr cannot compile; ours is used instead (the DSL list's
# nary_sequencemap reads the `length` primitive, which tracr rejects: "Unsupported S-Op: length").
_OWN_BUILD = frozenset({"nary_sequencemap"})


def _examples_from_dsl() -> dict[str, TracrExample] | None:
    """The DSL bridge's list (same programs, vocabularies and lengths as the DSL uses)."""
    try:
        from mechsynth.dsl.rasp_bridge import LIB_EXAMPLES
    except ImportError:
        return None
    ours = _examples()
    rows = {}
    for name, ex in LIB_EXAMPLES.items():
        mine = ours.get(name)
        if name in _OWN_BUILD and mine is not None:
            rows[name] = mine
            continue
        rows[name] = TracrExample(
            name, ex.build, tuple(ex.vocab), ex.max_seq_len, bos=ex.bos,
            domain=mine.domain if mine else None, description=mine.description if mine else "",
        )
    return rows


# --- stage 1: compile, keeping the annotated graph --------------------------------------------
@dataclass(frozen=True, eq=False)
class CompiledRasp:
    """tracr's output for one program: the assembled model and the annotated RASP graph."""

    program: rasp.SOp
    assembled: AssembledTransformerModel
    graph: nx.DiGraph
    vocab: tuple
    max_seq_len: int
    causal: bool
    bos: str


def compile_program(
    program: rasp.SOp, vocab: Iterable[Any], max_seq_len: int, *, causal: bool = False,
    bos: str = COMPILER_BOS, mlp_exactness: int = 100,
) -> CompiledRasp:
    """tracr's `compile_rasp_to_model`, pass by pass, also returning the annotated graph."""
    from tracr.compiler import (
        basis_inference,
        craft_graph_to_model,
        craft_model_to_transformer,
        expr_to_craft_graph,
        rasp_to_graph,
        validating,
    )
    from tracr.craft import bases
    from tracr.rasp import rasp

    vocab_set = set(vocab)
    if bos in vocab_set or COMPILER_PAD in vocab_set:
        raise TargetError(f"the vocabulary may not contain the BOS token {bos!r} or {COMPILER_PAD!r}")
    if max_seq_len < 1:
        raise TargetError(f"max_seq_len must be >= 1, got {max_seq_len}")
    unsupported = validating.static_validate(program)
    if unsupported:
        first = unsupported[0]
        raise TargetError(f"tracr cannot compile {first.expr.label}: {first.reason}")
    try:
        extracted = rasp_to_graph.extract_rasp_graph(program)
        graph, sources, sink = extracted.graph, extracted.sources, extracted.sink
        basis_inference.infer_bases(graph, sink, vocab_set, max_seq_len)
        expr_to_craft_graph.add_craft_components_to_rasp_graph(
            graph, bos_dir=bases.BasisDirection(rasp.tokens.label, bos), mlp_exactness=mlp_exactness
        )
        craft_model = craft_graph_to_model.craft_graph_to_model(graph, sources)
        assembled = craft_model_to_transformer.craft_model_to_transformer(
            craft_model=craft_model, graph=graph, sink=sink, max_seq_len=max_seq_len, causal=causal,
            compiler_bos=bos, compiler_pad=COMPILER_PAD,
        )
    except (NotImplementedError, ValueError, KeyError, TypeError) as e:
        raise TargetError(f"tracr failed to compile {program.label}: {type(e).__name__}: {e}") from None
    ordered = tuple(sorted(vocab_set, key=lambda v: (type(v).__name__, v)))
    return CompiledRasp(program, assembled, graph, ordered, max_seq_len, causal, bos)


# --- stage 2: haiku parameters -> TransformerLens layout --------------------------------------
def tracr_state_dict(assembled: AssembledTransformerModel) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """(config, state dict) of the compiled model in the classic TransformerLens layout."""
    import einops
    import haiku as hk
    import jax.numpy as jnp

    p = {k: {kk: np.asarray(vv) for kk, vv in v.items()} for k, v in assembled.params.items()}
    mc = assembled.model_config
    n_heads = mc.num_heads

    @hk.without_apply_rng
    @hk.transform
    def unembed(x: Any) -> Any:
        return assembled.get_compiled_model().unembed(x, use_unembed_argmax=False)

    w_e, w_pos = p["token_embed"]["embeddings"], p["pos_embed"]["embeddings"]
    d_model = w_e.shape[1]
    # The unembedding is a closure over the output space; applying it to the identity reads off W_U.
    w_u = np.asarray(unembed.apply(assembled.params, jnp.eye(d_model))).reshape(d_model, -1)
    config = dict(
        n_layers=mc.num_layers, d_model=d_model, d_head=mc.key_size, n_heads=n_heads,
        d_mlp=p["transformer/layer_0/mlp/linear_1"]["w"].shape[1], d_vocab=w_e.shape[0],
        d_vocab_out=w_u.shape[1], n_ctx=w_pos.shape[0], act_fn="relu", normalization_type=None,
        attention_dir="causal" if mc.causal else "bidirectional",
    )
    sd: dict[str, np.ndarray] = {
        "embed.W_E": w_e, "pos_embed.W_pos": w_pos, "unembed.W_U": w_u, "unembed.b_U": np.zeros(w_u.shape[1]),
    }
    for layer in range(mc.num_layers):
        attn, mlp = f"transformer/layer_{layer}/attn", f"transformer/layer_{layer}/mlp"
        for tl_name, hk_name in (("Q", "query"), ("K", "key"), ("V", "value")):
            w, b = p[f"{attn}/{hk_name}"]["w"], p[f"{attn}/{hk_name}"]["b"]
            sd[f"blocks.{layer}.attn.W_{tl_name}"] = einops.rearrange(w, "d (h k) -> h d k", h=n_heads)
            sd[f"blocks.{layer}.attn.b_{tl_name}"] = einops.rearrange(b, "(h k) -> h k", h=n_heads)
        w_o = p[f"{attn}/linear"]["w"]
        sd[f"blocks.{layer}.attn.W_O"] = einops.rearrange(w_o, "(h k) d -> h k d", h=n_heads)
        sd[f"blocks.{layer}.attn.b_O"] = p[f"{attn}/linear"]["b"]
        sd[f"blocks.{layer}.mlp.W_in"] = p[f"{mlp}/linear_1"]["w"]
        sd[f"blocks.{layer}.mlp.b_in"] = p[f"{mlp}/linear_1"]["b"]
        sd[f"blocks.{layer}.mlp.W_out"] = p[f"{mlp}/linear_2"]["w"]
        sd[f"blocks.{layer}.mlp.b_out"] = p[f"{mlp}/linear_2"]["b"]
    return config, {k: np.array(v, dtype=np.float32) for k, v in sd.items()}


# --- stage 3: the target ----------------------------------------------------------------------
def target_from_compiled(
    compiled: CompiledRasp, name: str, *, domain: Domain | None = None, description: str = "",
    ground_truth: bool = True,
) -> Target:
    """The converted network, its task (the program's own outputs) and its ground truth."""
    from tracr.rasp import rasp

    from mechsynth.models import ground_truth as gt

    assembled, program = compiled.assembled, compiled.program
    config, sd = tracr_state_dict(assembled)
    model = build_bridge(config, sd)
    numerical = rasp.is_numerical(program)
    output_values: tuple = ()
    if not numerical:
        output_values = tuple(assembled.output_encoder.decode(list(range(config["d_vocab_out"]))))

    def labeller(x: Sequence[Any]) -> list:
        return list(rasp.evaluate(program, list(x)))

    task = Task(
        name=name, vocab=compiled.vocab, min_len=1, max_len=compiled.max_seq_len, labeller=labeller,
        bos=compiled.bos, readout="all", output_kind="numerical" if numerical else "categorical",
        output_vocab=output_values, domain=domain, description=description,
    )
    locations = gt.variable_locations(compiled, sd)
    info = {
        "kind": "tracr", "config": config, "residual_labels": tuple(assembled.residual_labels),
        "rasp_locations": locations, "accuracy": None,
    }
    target = Target(
        name=name, model=model, task=task, input_ids=dict(assembled.input_encoder.encoding_map),
        output_values=output_values, info=info,
    )
    if ground_truth:
        # A program the DSL bridge cannot translate still makes a usable target; the reason is kept.
        try:
            hypothesis = gt.ground_truth_hypothesis(compiled, locations)
        except TargetError as e:
            return _with(target, info={**target.info, "ground_truth_error": str(e)})
        if hypothesis is not None:
            target = _with(target, ground_truth=hypothesis)
    return target


def _with(target: Target, **changes: Any) -> Target:
    import dataclasses

    return dataclasses.replace(target, **changes)


def compile_rasp(
    expr: rasp.SOp, vocab: Iterable[Any], max_seq_len: int, name: str | None = None, *,
    causal: bool = False, bos: str = COMPILER_BOS, domain: Domain | None = None,
) -> Target:
    """Compile any RASP program into a target with ground truth (takes seconds; not cached)."""
    compiled = compile_program(expr, vocab, max_seq_len, causal=causal, bos=bos)
    return target_from_compiled(compiled, name or f"rasp:{expr.label}", domain=domain)


@functools.cache
def compiled_example(name: str) -> CompiledRasp:
    """The compiled tracr lib example `name` (cached: compiling takes seconds)."""
    example = lib_examples()[name]
    return compile_program(example.build(), example.vocab, example.max_len, bos=example.bos)


@functools.cache
def tracr_target(name: str) -> Target:
    """`tracr:<name>` for the lib examples (cached per process; treat the network as read-only)."""
    examples = lib_examples()
    if name not in examples:
        raise KeyError(name)
    example = examples[name]
    target = target_from_compiled(
        compiled_example(name), f"tracr:{name}", domain=example.domain, description=example.description
    )
    accuracy = target.accuracy(list(target.task.enumerate()))
    return _with(target, info={**target.info, "accuracy": accuracy, "n_eval": "all inputs"})


def tracr_predict(compiled: CompiledRasp, inputs: Sequence[Sequence[Any]]) -> list[list]:
    """tracr's own decoded outputs (BOS position dropped), batched by length."""
    import jax.numpy as jnp

    assembled = compiled.assembled
    out: list[list] = [[] for _ in inputs]
    by_len: dict[int, list[int]] = {}
    for i, x in enumerate(inputs):
        by_len.setdefault(len(x), []).append(i)
    for idx in by_len.values():
        ids = [assembled.input_encoder.encode([compiled.bos, *inputs[i]]) for i in idx]
        unembedded = np.asarray(assembled.forward(assembled.params, jnp.array(ids)).unembedded_output)
        for row, i in zip(unembedded, idx):
            values = row[1:].tolist()
            if assembled.output_encoder is not None:
                values = assembled.output_encoder.decode(values)
            if values and isinstance(values[0], list):  # numerical output: one column
                values = [v[0] for v in values]
            out[i] = list(values)
    return out


# --- the target table -------------------------------------------------------------------------
# Compiling all 15 examples takes minutes, too slow for listing targets; their sizes and measured
# accuracy are recorded once in this manifest (regenerate: `write_manifest()` / `cmd_tracr_manifest()`),
# and the test suite checks the manifest against freshly compiled targets.
MANIFEST = Path(__file__).parent / "checkpoints" / "tracr_manifest.json"


def measure(name: str) -> dict[str, Any]:
    """Size of the compiled network and its accuracy on every input up to max length."""
    t = tracr_target(name)
    cfg = t.model.cfg
    return {"layers": cfg.n_layers, "heads": cfg.n_heads, "d_model": cfg.d_model, "d_mlp": cfg.d_mlp,
            "accuracy": t.info["accuracy"], "n_inputs": sum(1 for _ in t.task.enumerate()),
            "vocab": list(t.vocab), "max_len": t.max_len}


def read_manifest() -> dict[str, dict[str, Any]]:
    try:
        return json.loads(MANIFEST.read_text())
    except (OSError, json.JSONDecodeError):
        return {}


def write_manifest(path: Path = MANIFEST) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = {name: measure(name) for name in lib_examples()}
    path.write_text(json.dumps(rows, indent=1) + "\n")
    return path


def cmd_tracr_manifest() -> int:
    """Recompile every lib example and rewrite the manifest `list_targets` reads."""
    print(write_manifest())
    return 0
