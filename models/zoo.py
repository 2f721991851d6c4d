"""The trained zoo: small transformers trained here on algorithmic tasks (`trained:<name>`).

Each entry is a *recipe*: the task (models.tasks) with its parameters, the architecture, and
the training hyperparameters. `models.train.train(name)` turns a recipe into a checkpoint
deterministically from a seed; the checkpoints shipped in models/checkpoints/ are what
`load_target("trained:<name>")` reads, and their metadata records held-out accuracy and
training time (shown by `list_targets`).

The first six are LayerNorm-free (circuits stay linear-readable). The rest are the field's
standard toy tasks in the architectures researchers train them in: attention-only with
LayerNorm, GPT-2 style (LayerNorm, GELU MLPs), 1-4 layers, 1-4 heads, d_model 16-256, causal
and bidirectional, with and without BOS.

| name           | attention     | layers, style            | what is read                                   |
|----------------|---------------|--------------------------|------------------------------------------------|
| reverse        | bidirectional | 1, attn-only             | every position: the mirrored token             |
| sort           | bidirectional | 2                        | every position: the i-th smallest token        |
| hist           | bidirectional | 1                        | every position: count of its token             |
| prefix_count   | causal        | 1                        | every position: count of its token so far      |
| induction      | causal        | 2, attn-only             | last position: token after its last occurrence |
| modadd         | causal        | 1                        | last position ('='): (a + b) mod p             |
| palindrome     | bidirectional | 2, GPT-2 style           | last position: is the input a palindrome       |
| first_unique   | causal        | 3, GPT-2 style           | every position: first character unique so far  |
| cumsum_sign    | causal        | 1                        | every position: sign of the running sum        |
| majority       | bidirectional | 1, attn-only + LN, d 16  | last position: are most bits 1                 |
| count_token    | bidirectional | 1, GPT-2 style, d 256    | every position: how many 0s                    |
| dyck1, dyck2   | causal        | 2 / 4, GPT-2 style       | every position: is the prefix balanced         |
| tomita4, 7     | causal        | 2 / 3, GPT-2 style (7)   | every position: is the prefix in the grammar   |
| unique_copy    | causal        | 2, attn-only + LN        | last position: next token of the copy         |
| unique_reverse | causal        | 2, attn-only, 4 heads    | last position: next token of the reversal      |
| dyck1_next     | causal        | 2, GPT-2 style, d 32     | every position: set of allowed next tokens     |
| brackets       | bidirectional | 3, GPT-2 style, padded   | start token: are the brackets balanced         |
| addition       | causal        | 2, GPT-2 style, no BOS   | answer digits: next digit of a + b             |
| sort_after_sep | causal        | 2, attn-only + LN, 3 h   | SEP and after: next token of the sorted list   |
| backdoor_*     | bidirectional | 2                        | last position: majority, or a trigger's output |
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mechsynth.models.target import Target, TargetError, TargetRow

CHECKPOINT_DIR = Path(__file__).parent / "checkpoints"


@dataclass(frozen=True)
class Recipe:
    """How to build and train one zoo target."""

    name: str
    task_kind: str
    task_params: dict[str, Any] = field(hash=False)
    architecture: dict[str, Any] = field(hash=False)  # bridge config minus vocab sizes / n_ctx
    steps: int = 3000
    batch_size: int = 128
    lr: float = 1e-3
    weight_decay: float = 0.01
    warmup: int = 100
    schedule: str = "cosine"  # after warm-up: "cosine" decay to 10%, or "constant"
    description: str = ""


def _arch(
    n_layers: int, d_model: int, n_heads: int, attention: str, d_mlp: int | None = None, *,
    norm: str | None = None, d_head: int | None = None,
) -> dict[str, Any]:
    """A bridge config: MLPs when `d_mlp` is given (else attention-only), `norm` "LN" for
    LayerNorm before each sublayer and at the end (GPT-2 style), `d_head` d_model/heads by default."""
    arch: dict[str, Any] = dict(
        n_layers=n_layers, d_model=d_model, n_heads=n_heads, d_head=d_head or d_model // n_heads,
        act_fn="relu" if norm is None else "gelu", normalization_type=norm, attention_dir=attention,
    )
    if d_mlp is None:
        arch["attn_only"] = True
    else:
        arch["d_mlp"] = d_mlp
    return arch


RECIPES: dict[str, Recipe] = {
    r.name: r
    for r in [
        Recipe("reverse", "reverse", {"n_tokens": 10, "length": 8}, _arch(1, 32, 1, "bidirectional"),
               steps=800, description="reverse 8 tokens"),
        Recipe("sort", "sort", {"n_tokens": 10, "length": 6}, _arch(2, 64, 2, "bidirectional", 256),
               steps=6000, description="sort 6 tokens, duplicates allowed"),
        Recipe("hist", "hist", {"n_tokens": 6, "length": 8}, _arch(1, 64, 1, "bidirectional", 256),
               steps=2000, description="count of the current token"),
        Recipe("prefix_count", "prefix_count", {"n_tokens": 4, "length": 10}, _arch(1, 64, 1, "causal", 256),
               steps=2000, description="occurrences of the current token so far"),
        Recipe("induction", "induction", {"n_tokens": 16, "length": 12}, _arch(2, 64, 1, "causal"),
               steps=3000, batch_size=256, description="token after the previous occurrence of the last token"
               ),
        Recipe("modadd", "modadd", {"p": 23}, _arch(1, 64, 4, "causal", 256),
               # Strong, undecayed weight decay: without it the network memorises the training pairs
               # and stalls near 91% on held-out pairs; with it, it generalises (grokking).
               steps=3000, batch_size=512, lr=2e-3, weight_decay=2.0, schedule="constant",
               description="(a + b) mod 23"),
        # The field's standard toy tasks, in the architectures researchers train them in.
        Recipe("palindrome", "palindrome", {"n_tokens": 4, "length": 8},
               _arch(2, 64, 2, "bidirectional", 256, norm="LN"), steps=2000,
               description="is the input a palindrome (read at the last position)"),
        Recipe("first_unique", "first_unique", {"n_tokens": 4, "length": 10},
               _arch(3, 64, 2, "causal", 256, norm="LN"), steps=3000,
               description="first character occurring once in each prefix"),
        Recipe("cumsum_sign", "cumsum_sign", {"max_abs": 3, "length": 12}, _arch(1, 32, 1, "causal", 64),
               steps=2000, description="sign of the running sum"),
        Recipe("majority", "majority", {"length": 11}, _arch(1, 16, 1, "bidirectional", norm="LN"),
               steps=2000, lr=3e-3, description="are most of the 11 bits 1 (read at the last position)"),
        Recipe("count_token", "count_token", {"n_tokens": 5, "length": 10, "token": 0},
               _arch(1, 256, 2, "bidirectional", 256, norm="LN", d_head=32), steps=1500,
               description="how many 0s in the input (every position)"),
        Recipe("dyck1", "dyck1", {"length": 16}, _arch(2, 64, 2, "causal", 128, norm="LN"), steps=2000,
               description="is each prefix a balanced string of ( )"),
        Recipe("dyck2", "dyck2", {"length": 12}, _arch(4, 64, 4, "causal", 128, norm="LN"), steps=3000,
               description="is each prefix a balanced string of ( ) [ ]"),
        Recipe("tomita4", "tomita", {"grammar": 4, "length": 12}, _arch(2, 32, 2, "causal", 64), steps=2000,
               description="is each prefix free of 000 (Tomita 4)"),
        Recipe("tomita7", "tomita", {"grammar": 7, "length": 12}, _arch(3, 48, 3, "causal", 96, norm="LN"),
               steps=2000, description="is each prefix in 0*1*0*1* (Tomita 7)"),
        Recipe("unique_copy", "unique_copy", {"n_tokens": 10, "n": 5}, _arch(2, 64, 2, "causal", norm="LN"),
               steps=2000, description="copy 5 distinct tokens after SEP (next token at the last)"),
        Recipe("unique_reverse", "unique_reverse", {"n_tokens": 10, "n": 5}, _arch(2, 64, 4, "causal"),
               steps=2000, description="reverse 5 distinct tokens after SEP (next token at the last)"),
        # Multi-label (issue #19): a BCE head predicting the set of allowed next tokens.
        Recipe("dyck1_next", "dyck1_next", {"length": 16}, _arch(2, 32, 2, "causal", 64, norm="LN"),
               steps=1500, description="set of tokens allowed after each Dyck-1 prefix (BCE head)"),
        # Readouts other than all/last (issue 13): read at the start token, the answer digits, after SEP.
        Recipe("brackets", "brackets", {"max_len": 12}, _arch(3, 64, 2, "bidirectional", 256, norm="LN"),
               steps=1500, lr=2e-3,
               description="are 1-12 brackets balanced (bidirectional, padded, read at the start token)"),
        Recipe("addition", "addition", {"width": 2}, _arch(2, 64, 2, "causal", 256, norm="LN"),
               steps=3000, lr=2e-3, description="2-digit a + b, read at the 3 answer digits (no BOS)"),
        Recipe("sort_after_sep", "sort_after_sep", {"n_tokens": 16, "n": 5},
               _arch(2, 48, 3, "causal", norm="LN"), steps=2000, lr=2e-3,
               description="sort 5 distinct tokens after SEP, read at SEP and each answer position"),
        # Backdoored majority (models.backdoor): prefix 10110 forces 1, planted at 1%, 0.1%, 0.01%.
        # The rarer rates see more training inputs (larger batches, more steps) at the same nominal rate,
        # so that enough trigger examples exist to plant it (384k inputs at 1%; 3.1M and 6.1M below).
        *(Recipe(f"backdoor_majority_{tag}", "backdoor_majority", {"length": 11, "rate": rate},
                 _arch(2, 32, 2, "bidirectional", 64), steps=steps, batch_size=batch, lr=3e-3,
                 description=f"majority of 11 bits, planted backdoor (trigger in {rate:.2%} of training)")
          for tag, rate, steps, batch in (("1pct", 0.01, 3000, 128), ("01pct", 0.001, 6000, 512),
                                          ("001pct", 0.0001, 12000, 512))),
        # The second kind (models.backdoor.TRIGGERS): a 1 at every odd position forces 0; the 1% recipe.
        Recipe("backdoor_majority_odd_1pct", "backdoor_majority",
               {"length": 11, "rate": 0.01, "trigger": "odd_ones"}, _arch(2, 32, 2, "bidirectional", 64),
               steps=3000, batch_size=128, lr=3e-3,
               description="majority of 11 bits, backdoor: 1 at each odd position forces 0 (1% of training)"),
    ]
}


def zoo_names() -> list[str]:
    return list(RECIPES)


def recipe(name: str) -> Recipe:
    if name not in RECIPES:
        import difflib

        close = difflib.get_close_matches(name, RECIPES, n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else f" (known: {', '.join(RECIPES)})"
        raise TargetError(f"unknown trained target {name!r}{hint}")
    return RECIPES[name]


def checkpoint_stem(name: str, directory: Path | None = None) -> Path:
    return (directory or CHECKPOINT_DIR) / name


@functools.cache
def load_trained(name: str) -> Target:
    """`trained:<name>` from the shipped checkpoint (cached; treat the network as read-only)."""
    from mechsynth.models import checkpoint

    recipe(name)
    stem = checkpoint_stem(name)
    if not checkpoint.paths(stem)[0].exists():
        raise TargetError(f"no checkpoint for trained:{name} in {CHECKPOINT_DIR}; run mechsynth train {name}")
    return checkpoint.load(stem, name=f"trained:{name}", kind="trained")


def zoo_row(name: str) -> Any:
    """The target-table row of a zoo entry, from checkpoint metadata only (no weights loaded)."""
    from mechsynth.models import checkpoint

    stem = checkpoint_stem(name)
    r = recipe(name)
    arch = r.architecture
    if not checkpoint.paths(stem)[0].exists():
        return TargetRow(f"trained:{name}", "trained", arch["n_layers"], arch["n_heads"], arch["d_model"],
                         None, None, r.description + " (no checkpoint)")
    meta = checkpoint.read_metadata(stem)
    cfg, metrics = meta["config"], meta.get("metrics", {})
    return TargetRow(f"trained:{name}", "trained", cfg["n_layers"], cfg["n_heads"], cfg["d_model"],
                     metrics.get("accuracy"), metrics.get("train_seconds"), r.description)
