"""ACDC and edge attribution patching on one exported target, inside the auto-circuit venv.

This script runs under the peer venv's Python (transformer_lens 2.x, auto-circuit
1.0.1), never under ours: it imports nothing from mechsynth. ``synth.bench.acdc_peer``
writes its input and reads its output:

    python acdc_worker.py IN.npz IN.json OUT.json

``IN.npz`` holds the target's weights in the classic TransformerLens layout (with the
target's real unembedding) and the token batches: ``__clean`` and ``__corrupt``
(``[batch, seq]``, same length, BOS included when the target uses one), ``__answers``
(the network's own clean prediction per read position) and ``__clean_logits`` (our
network's logits, to prove the rebuilt model computes the same function).
``IN.json`` holds the model config and the run settings. The output lists every edge
with its ACDC and EAP scores and the time each method took.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch


def build_model(config: dict, weights: dict) -> torch.nn.Module:
    from transformer_lens import HookedTransformer, HookedTransformerConfig

    cfg = HookedTransformerConfig(
        n_layers=config["n_layers"],
        d_model=config["d_model"],
        d_head=config["d_head"],
        n_heads=config["n_heads"],
        d_mlp=config.get("d_mlp"),
        d_vocab=config["d_vocab"],
        d_vocab_out=config["d_vocab_out"],
        n_ctx=config["n_ctx"],
        act_fn=config.get("act_fn") or "relu",
        normalization_type=config.get("normalization_type"),
        attention_dir=config.get("attention_dir", "causal"),
        attn_only=bool(config.get("attn_only", False)),
        # auto-circuit patches edges through these hooks (peers.md).
        use_attn_result=True,
        use_split_qkv_input=True,
        use_hook_mlp_in=True,
        device="cpu",
        seed=0,
    )
    model = HookedTransformer(cfg)
    sd = {k: torch.tensor(v, dtype=torch.float32) for k, v in weights.items()}
    result = model.load_state_dict(sd, strict=False)
    params = {name for name, _ in model.named_parameters()}
    missing = sorted(set(result.missing_keys) & params)
    if missing or result.unexpected_keys:
        raise SystemExit(
            f"weights do not fit the rebuilt model: missing {missing[:3]}, "
            f"unexpected {list(result.unexpected_keys)[:3]}"
        )
    model.eval()
    return model


def _load(npz_path: str, json_path: str) -> tuple[dict, dict, dict[str, torch.Tensor]]:
    """(settings, weights, batches): the batches are clean, corrupt, answers and our_logits."""
    settings = json.loads(open(json_path).read())
    data = dict(np.load(npz_path))
    weights = {k: v for k, v in data.items() if not k.startswith("__")}
    batches = {
        "clean": torch.tensor(data["__clean"], dtype=torch.long),
        "corrupt": torch.tensor(data["__corrupt"], dtype=torch.long),
        "answers": torch.tensor(data["__answers"], dtype=torch.long),  # [batch, read positions]
        "our_logits": torch.tensor(data["__clean_logits"], dtype=torch.float32),
    }
    return settings, weights, batches


def _rebuild(settings: dict, weights: dict, batches: dict) -> tuple[torch.nn.Module, float]:
    """The TL 2.x model from the exported weights, and its max |logit difference| from ours on the
    clean batch (proof that it computes our function)."""
    torch.manual_seed(0)
    model = build_model(settings["config"], weights)
    with torch.no_grad():
        rebuilt_logits = model(batches["clean"])
    return model, float((rebuilt_logits - batches["our_logits"]).abs().max())


def _prompts(batches: dict[str, torch.Tensor], *, numerical: bool, n_out: int) -> tuple[list, ...]:
    """(clean, corrupt, answers, wrong answers) per prompt, as auto-circuit's PromptDataset takes them."""
    answers = batches["answers"]
    # Answers per read position: shape [read positions, 1] per prompt so the gather in
    # auto-circuit's answer functions lines up with logits[batch, position, vocab].
    answer_list = [a.unsqueeze(-1) for a in answers]
    if numerical:
        wrong_list = [torch.zeros_like(a) for a in answer_list]
    else:
        wrong_list = [
            torch.tensor([[c for c in range(n_out) if c != int(v)] for v in a], dtype=torch.long)
            for a in answers
        ]
    return list(batches["clean"]), list(batches["corrupt"]), answer_list, wrong_list


def _timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    """(fn's result, its wall time in seconds)."""
    start = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - start


def _edge_rows(edges: list, acdc_scores: Any, eap_scores: Any) -> list[dict]:
    rows = []
    for edge in edges:
        a = float(edge.prune_score(acdc_scores))
        rows.append(
            {
                "edge": edge.name,
                "src": edge.src.name,
                "dest": edge.dest.name,
                "acdc_kept": a == float("inf"),
                "eap_score": abs(float(edge.prune_score(eap_scores))),
            }
        )
    return rows


def main(npz_path: str, json_path: str, out_path: str) -> int:
    from auto_circuit.data import PromptDataLoader, PromptDataset
    from auto_circuit.prune_algos.ACDC import acdc_prune_scores
    from auto_circuit.prune_algos.mask_gradient import mask_gradient_prune_scores
    from auto_circuit.utils.graph_utils import patchable_model

    settings, weights, batches = _load(npz_path, json_path)
    model, rebuild_diff = _rebuild(settings, weights, batches)
    numerical = settings["output_kind"] == "numerical"
    dataset = PromptDataset(*_prompts(batches, numerical=numerical, n_out=settings["d_vocab_out"]))
    loader = PromptDataLoader(dataset, seq_len=None, diverge_idx=0, batch_size=len(dataset), shuffle=False)

    pmodel = patchable_model(
        model,
        factorized=True,
        slice_output="not_first_seq" if settings["has_bos"] else None,
        separate_qkv=True,
        device=torch.device("cpu"),
    )
    edges = sorted(pmodel.edges, key=lambda e: e.name)

    # ACDC: one threshold; edges it never prunes keep score +inf.
    acdc_scores, acdc_seconds = _timed(
        lambda: acdc_prune_scores(
            pmodel,
            loader,
            official_edges=None,
            tao_exps=[settings["tau_exp"]],
            tao_bases=[settings["tau_base"]],
            faithfulness_target="mse" if numerical else "kl_div",
        )
    )
    # EAP: the fast, equivalent form (logit gradient at mask 0, auto-circuit's docs):
    # logit difference of the network's own prediction against every other class, or
    # the output value itself for a numerical readout.
    eap_scores, eap_seconds = _timed(
        lambda: mask_gradient_prune_scores(
            pmodel,
            loader,
            official_edges=None,
            grad_function="logit",
            answer_function="avg_val" if numerical else "avg_diff",
            mask_val=0.0,
        )
    )
    out = {
        "n_edges": len(edges),
        "tau": settings["tau_base"] * 10.0 ** settings["tau_exp"],
        "faithfulness": "mse" if numerical else "kl_div",
        "acdc_seconds": acdc_seconds,
        "eap_seconds": eap_seconds,
        "rebuild_max_abs_diff": rebuild_diff,
        "edges": _edge_rows(edges, acdc_scores, eap_scores),
        "batch": int(batches["clean"].shape[0]),
        "seq_len": int(batches["clean"].shape[1]),
    }
    with open(out_path, "w") as fh:
        json.dump(out, fh)
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 4:
        print("usage: acdc_worker.py IN.npz IN.json OUT.json", file=sys.stderr)
        sys.exit(2)
    sys.exit(main(*sys.argv[1:]))
