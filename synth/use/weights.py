"""Weight edit: make an edit permanent in the weights of the one component the hypothesis locates.

Activation patching (``synth.use.edit``) shows that writing the edited program's values at a
claimed location makes the network follow the edited program. A *weight edit* makes that a
new network: when the edit's frontier is one variable located at a whole MLP's output
(``blocks.L.hook_mlp_out``, or a subspace of it), that MLP's parameters, and only those, are
fitted by gradient descent so that its output on the fit inputs equals the patched
activations (the clean activation with the frontier values written in), every other weight
frozen. The edited network is then evaluated like the patched one (does it follow the edited
program on fresh inputs, and the original where the edit changes nothing), and saved as a
checkpoint (``models.checkpoint``: safetensors + JSON) with a ``.py`` file next to it that
loads it, so ``file:<stem>.py`` is a target like any other.

Deleting a backdoor branch (``bd_out = clean_out``, see ``synth.propose.residual``) is the use
this was built for: the MLP that computes the branch is refitted to compute the clean output.
Heads (a frontier at ``hook_z``) and several frontier variables are not fitted here: the
result says so (a ``UseError``), and activation patching still applies.
"""

from __future__ import annotations

import copy
import dataclasses
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from mechsynth.synth.use.inputs import UseError

if TYPE_CHECKING:
    from mechsynth.dsl.hypothesis import Hypothesis
    from mechsynth.models import Target

FIT_STEPS = 200
FIT_LR = 3e-3

_LOADER = '''"""Weight-edited network written by mechsynth (synth.use.weights): load it as file:{py}."""
from pathlib import Path

from mechsynth.models.checkpoint import load


def target():
    return load(Path(__file__).with_suffix(""), kind="file")
'''


@dataclass(frozen=True)
class WeightEdit:
    """The fitted component, the fit's numbers, and how the edited network behaves."""

    target: str
    edits: str
    component: str  # the hook whose MLP was refitted
    n_fit: int
    steps: int
    loss_before: float  # fit loss (site MSE / variance + readout KL to the patched run) before fitting
    loss_after: float
    n_eval: int
    follows_edited: float  # fresh inputs: the weight-edited network gives the edited program's output
    follows_edited_touched: float  # ... where the edit changes the program's output
    n_touched: int
    follows_original_untouched: float  # ... and the original output where the edit changes nothing
    saved: str | None  # the file: target (.py) of the saved checkpoint

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


def mlp_layer(target: Target, hook: str) -> int:
    """The layer whose MLP writes ``hook`` (a canonical hook; UseError when it is not an MLP output)."""
    from mechsynth.dsl.location import Location, act_name
    from mechsynth.synth.check.patching import probe, resolve

    info = probe(target.model)
    for layer in range(int(target.model.cfg.n_layers)):
        if hook == resolve(target.model, Location(act_name("mlp_out", layer)), info).hook:
            return layer
    raise UseError(f"the edit's frontier is at {hook}, not an MLP output: a weight edit refits one MLP "
                   "(activation patching, `mechsynth edit`, still applies)")


def _fit_inputs(target: Target, n: int, seed: int) -> list[tuple]:
    every = target.task.every_input(n)
    if every is not None:
        return [tuple(x) for x in every]
    return list(dict.fromkeys(tuple(x) for x in target.task.sample(n, seed)))


def weight_edit(target: Target, hypothesis: Hypothesis, edits: str | Sequence[Any], *, n: int = 4000,
                steps: int = FIT_STEPS, lr: float = FIT_LR, seed: int = 0, save: str | Path | None = None,
                n_eval: int = 1000) -> tuple[WeightEdit, Target]:
    """Refit the MLP at the edit's frontier to the patched activations (module docstring).

    Returns the numbers and the edited target; with ``save`` (a path stem) the checkpoint and its
    ``file:`` loader are written there.
    """
    from mechsynth.dsl import evaluate
    from mechsynth.synth.check.patching import Edit, ReadIndex, probe, readout_loss, resolve, run
    from mechsynth.synth.use.edit import _follows, _rate, apply_edits, frontier, parse_edits, patched_outputs
    from mechsynth.dsl.location import Location

    parsed = parse_edits(edits) if isinstance(edits, str) else tuple(edits)
    original = hypothesis.program
    edited = apply_edits(original, parsed)
    located = [v for v in hypothesis.correspondence if v not in ("tokens", "indices", "length")]
    variables = frontier(original, edited, located)
    if len(variables) != 1:
        raise UseError(f"a weight edit needs the edit's frontier to be one located variable; it is "
                       f"{', '.join(variables) or 'empty'}")
    var = variables[0]
    info = probe(target.model)
    site = resolve(target.model, hypothesis.correspondence[var], info)
    layer = mlp_layer(target, site.hook)
    whole = resolve(target.model, Location(site.hook), info)

    fit = _fit_inputs(target, n, seed)
    patched = patched_outputs(target, hypothesis, edited, [var], fit, seed=seed)
    model = copy.deepcopy(target.model)
    for p in model.parameters():
        p.requires_grad_(False)
    params = list(model.blocks[layer].mlp.parameters())
    for p in params:
        p.requires_grad_(True)
    off = target.position_offset
    column = target.numeric_column if target.task.output_kind == "numerical" else None
    batches = []
    for xs, values in zip(patched.groups, patched.site_values[var]):
        tokens = target.tokens([list(x) for x in xs])
        _, acts = run(target.model, tokens, capture=[whole])
        want = acts[whole].clone()
        length = values.shape[1]
        site.write(want[:, off:off + length], values)
        # The patched network's logits: the behaviour the refitted component must give.
        logits, _ = run(target.model, tokens, [Edit(site, values, slice(off, off + length))])
        read = ReadIndex.of_rows([[off + i for i in target.read_positions(list(x))] for x in xs])
        batches.append((tokens, want, logits, read))
    scale = float(torch.cat([w.flatten() for _, w, _, _ in batches]).var()) or 1.0

    def loss() -> torch.Tensor:
        """Activation MSE at the site (relative to its variance) + the readout's KL to the patched run."""
        total, kl = torch.zeros(()), torch.zeros(())
        count = n_read = 0
        got: dict[str, torch.Tensor] = {}

        def grab(act: torch.Tensor, hook: object) -> torch.Tensor:
            got["a"] = act
            return act

        for tokens, want, patched_logits, read in batches:
            with model.hooks(fwd_hooks=[(site.hook, grab)]):
                logits = model(tokens)
            total = total + ((got["a"] - want) ** 2).sum()
            count += want.numel()
            per = readout_loss(logits, patched_logits, read, column)
            kl = kl + per[read.valid].sum()
            n_read += int(read.valid.sum())
        return total / count / scale + kl / max(n_read, 1)

    opt = torch.optim.Adam(params, lr=lr)
    with torch.enable_grad():
        before = float(loss().detach())
        for _ in range(steps):
            opt.zero_grad()
            value = loss()
            value.backward()
            opt.step()
        after = float(loss().detach())
    for p in model.parameters():
        p.requires_grad_(False)
    new = dataclasses.replace(target, model=model, name=f"{target.name}+edit")

    inputs = [tuple(x) for x in target.task.sample(n_eval, seed + 7)]
    before_out = evaluate(original, [list(x) for x in inputs])
    after_out = evaluate(edited, [list(x) for x in inputs])
    touched = [f is False for f in _follows(target, before_out, after_out, inputs)]
    net = new.predict([list(x) for x in inputs])
    follows_edited = _follows(target, net, after_out, inputs)
    follows_original = _follows(target, net, before_out, inputs)
    saved = str(save_edited(new, target, save, parsed, layer)) if save is not None else None
    result = WeightEdit(
        target=target.name, edits="; ".join(str(e) for e in parsed), component=site.hook, n_fit=len(fit),
        steps=steps, loss_before=before, loss_after=after, n_eval=len(inputs),
        follows_edited=_rate(follows_edited),
        follows_edited_touched=_rate([f for f, t in zip(follows_edited, touched) if t]),
        n_touched=sum(touched),
        follows_original_untouched=_rate([f for f, t in zip(follows_original, touched) if not t]),
        saved=saved)
    return result, new


def save_edited(new: Target, original: Target, stem: str | Path, edits: Sequence[Any], layer: int) -> Path:
    """Write the edited network as a checkpoint plus its ``file:`` loader; returns the loader's path."""
    from mechsynth.models.checkpoint import paths, read_metadata, write

    source = original.info.get("path")
    if not source:
        raise UseError(f"{original.name} was not loaded from a checkpoint: its weight edit cannot be saved "
                       "as one (the edited network is still returned)")
    meta = read_metadata(source)
    meta.pop("format", None)
    stem = Path(stem)
    if stem.suffix in (".py", ".json", ".safetensors"):
        stem = stem.with_suffix("")
    meta["name"] = stem.name
    meta["training"] = {**meta.get("training", {}), "weight_edit": {
        "from": original.name, "edits": "; ".join(str(e) for e in edits),
        "refitted": f"MLP of layer {layer}"}}
    meta["metrics"] = {}
    write(stem, new.model, meta)
    py = stem.with_suffix(".py")
    py.write_text(_LOADER.format(py=py.name))
    json.loads(paths(stem)[0].read_text())  # written and readable
    return py


def format_weight_edit(r: WeightEdit) -> str:
    def f(v: float) -> str:
        return "-" if v != v else f"{v:.3f}"

    lines = [f"weight edit of {r.component} (its MLP refitted, every other weight frozen): {r.edits}",
             f"    fit on {r.n_fit} inputs, {r.steps} steps: loss (site MSE / variance + readout KL) "
             f"{r.loss_before:.4g} -> {r.loss_after:.4g}",
             f"    follows the edited program {f(r.follows_edited)} ({r.n_eval} fresh inputs); where the "
             f"edit changes the output {f(r.follows_edited_touched)} ({r.n_touched}); original kept "
             f"elsewhere {f(r.follows_original_untouched)}"]
    if r.saved:
        lines.append(f"    saved: file:{r.saved}")
    return "\n".join(lines)
