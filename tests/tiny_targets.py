"""Small hand-built targets for the control tests (no tracr, no training: fast and exact).

``tiny_target`` is a 2-layer TransformerBridge on a 3-token task; ``copy_target`` is a
hand-wired network whose output at each position is the token at that position, written
by layer 0's MLP only: the attention heads and layer 1 are present but unused. That lets
tests build hypotheses that *do* and *do not* describe what the network uses.
"""

from __future__ import annotations

import torch

from mechsynth import dsl
from mechsynth.models.bridge import build_bridge
from mechsynth.models.target import Target, Task
from mechsynth.dsl.location import Location

VOCAB = (0, 1, 2)
# Where copy_target keeps the token, and the program it computes (see copy_target).
EMBED = "hook_embed[dims=0,1,2]"
MLP0 = Location("blocks.0.hook_mlp_out", dims=(3, 4, 5))
COPY = dsl.parse("out = map(identity, tokens)")


def _task(name: str) -> Task:
    return Task(
        name=name,
        vocab=VOCAB,
        min_len=2,
        max_len=4,
        labeller=lambda x: list(x),
        bos="BOS",
        output_vocab=VOCAB,
    )


def _config(seed: int) -> dict:
    return dict(
        n_layers=2,
        d_model=12,
        d_head=3,
        n_heads=2,
        d_mlp=16,
        d_vocab=4,
        d_vocab_out=3,
        n_ctx=5,
        act_fn="relu",
        normalization_type=None,
        attention_dir="bidirectional",
        seed=seed,
    )


def tiny_target(seed: int, name: str = "tiny") -> Target:
    """A randomly initialised network (weights from ``seed``) on the copy task."""
    model = build_bridge(_config(seed))
    ids = {"BOS": 3, 0: 0, 1: 1, 2: 2}
    return Target(
        name=f"{name}[{seed}]",
        model=model,
        task=_task("copy"),
        input_ids=ids,
        output_values=VOCAB,
        info={"kind": "test"},
    )


def copy_target() -> Target:
    """Output = token, computed by MLP 0 from the embedding; heads and layer 1 contribute nothing.

    Residual dims 0..2: one-hot token (embedding). MLP 0 reads them and writes a scaled
    copy to dims 3..5; the unembedding reads dims 3..5 only. So the token is *used* at
    ``blocks.0.hook_mlp_out[dims=3,4,5]`` and nowhere else after the embedding.
    """
    model = build_bridge({**_config(0), "seed": 0})
    sd = {k: torch.zeros_like(v) for k, v in model.state_dict().items()}
    model.load_state_dict(sd)
    params = dict(model.named_parameters())
    with torch.no_grad():
        emb = params["tok_embed._original_component.weight"]
        for t in range(3):
            emb[t, t] = 1.0
        fc_in = params[
            "layers.0._original_component.mlp._original_component.fc_in._original_component.weight"
        ]
        fc_out = params[
            "layers.0._original_component.mlp._original_component.fc_out._original_component.weight"
        ]
        for t in range(3):
            fc_in[t, t] = 1.0  # torch Linear layout: [out, in]
            fc_out[3 + t, t] = 5.0
        head = params["head._original_component.weight"]
        for t in range(3):
            head[t, 3 + t] = 1.0
    ids = {"BOS": 3, 0: 0, 1: 1, 2: 2}
    return Target(
        name="copy",
        model=model,
        task=_task("copy"),
        input_ids=ids,
        output_values=VOCAB,
        info={"kind": "test"},
    )


def rotated_copy_target():
    """copy_target with MLP 0's write (and the unembedding's read) rotated inside residual dims 3..11.

    The token then lives in a 3-dim subspace of ``blocks.0.hook_mlp_out`` that is no set of basis
    dims: the embedding's dims 0..2 stay as they are, so the readout still reads only MLP 0.
    """
    target = copy_target()
    gen = torch.Generator().manual_seed(5)
    q = torch.eye(12)
    q[3:, 3:] = torch.linalg.qr(torch.randn(9, 9, generator=gen)).Q
    params = dict(target.model.named_parameters())
    with torch.no_grad():
        fc_out = params[
            "layers.0._original_component.mlp._original_component.fc_out._original_component.weight"
        ]
        fc_out.copy_(q @ fc_out)
        head = params["head._original_component.weight"]
        head.copy_(head @ q.T)
    return target
