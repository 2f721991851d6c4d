"""DAS (synth.das): a planted rotated variable is recovered out of sample; a random network is not."""

from __future__ import annotations

import itertools
import time

import torch

from mechsynth.dsl.hypothesis import Hypothesis
from mechsynth.dsl.location import Location
from mechsynth.synth import das
from mechsynth.synth.check import split
from mechsynth.synth.check.patching import Edit, probe, resolve, run, subspace_matrix
from mechsynth.synth.check.scoring import score

from tiny_targets import COPY, EMBED, rotated_copy_target, tiny_target

MLP0 = "blocks.0.hook_mlp_out"
CFG = das.DASConfig(k=3, n_train=128, steps=120, seed=0)


def test_planted_rotated_variable_recovered_held_out():
    target = rotated_copy_target()
    basis_dims = score(target, Hypothesis(COPY, {"out": MLP0 + "[dims=3,4,5]"}), n=128)
    assert basis_dims["iia"] < 0.5  # the planted variable is in no basis dims
    hypothesis, fit = das.with_das(target, Hypothesis(COPY, {"tokens": EMBED, "out": MLP0}), "out", CFG)
    loc = hypothesis.correspondence["out"]
    assert loc.subspace is not None and loc.subspace.k == 3 and loc.subspace.n_train == fit.n_train
    scores = score(target, hypothesis, n=128)
    assert scores["heldout_only"] is True
    assert not any(split.in_train_split(x) for x in scores["per_input"]["inputs"])
    assert fit.train_iia > 0.95 and fit.steps_run == CFG.steps and not fit.cut_short
    assert scores["iia"] > 0.95  # out of sample
    assert scores["loss_recovered"] > 0.9


def test_das_on_random_network_does_not_pass():
    real, _ = das.with_das(rotated_copy_target(), Hypothesis(COPY, {"tokens": EMBED, "out": MLP0}), "out",
                           CFG)
    for seed in (1, 2):
        random_target = tiny_target(seed)
        refitted = das.refit(random_target, real)
        assert refitted.correspondence["out"] != real.correspondence["out"]  # fitted anew, same procedure
        scores = score(random_target, refitted, n=128)
        assert scores["iia"] < 0.5


def test_fit_is_deterministic_in_seed():
    target = rotated_copy_target()
    cfg = das.DASConfig(k=1, n_train=32, steps=5, seed=3)
    a = das.fit_location(target, COPY, "out", Location(MLP0), cfg).location
    b = das.fit_location(target, COPY, "out", Location(MLP0), cfg).location
    assert a == b


def test_fit_cut_by_its_deadline_stops_at_a_cycle_and_replays(monkeypatch):
    """The deadline is asked before each cycle of n_sources steps: a clock that ticks once per question
    (steps counted, not time) past the deadline at the third question stops the fit after 2 cycles."""
    target = rotated_copy_target()
    cfg = das.DASConfig(k=1, n_train=32, steps=40, seed=0)  # the recorded procedure: n_sources default
    ticks = itertools.count(1)
    monkeypatch.setattr(das, "_clock", lambda: next(ticks))
    cut = das.fit_location(target, COPY, "out", Location(MLP0), cfg, deadline=2.5)
    assert cut.cut_short and cut.steps_run == 2 * cfg.n_sources
    assert cut.location.subspace.steps == cut.steps_run  # what the controls' refit replays
    monkeypatch.undo()
    replay = das.fit_location(target, COPY, "out", Location(MLP0), das.DASConfig.of(cut.location.subspace))
    assert not replay.cut_short and replay.location == cut.location
    full = das.fit_location(target, COPY, "out", Location(MLP0), cfg, deadline=time.monotonic() + 3600)
    assert not full.cut_short and full.steps_run == cfg.steps and full.location != cut.location


def test_fit_past_its_deadline_takes_no_step():
    target = rotated_copy_target()
    cfg = das.DASConfig(k=1, n_train=32, steps=40, seed=0)
    fit = das.fit_location(target, COPY, "out", Location(MLP0), cfg, deadline=time.monotonic() - 1.0)
    assert fit.cut_short and fit.steps_run == 0 and fit.location.subspace.steps == 0


def test_fit_interchange_is_the_checks_interchange():
    """One definition of the subspace swap: the logits DAS trains on, at the fitted rotation, are the
    logits of the checks' patching run with the fitted location (Site.write either way)."""
    target = rotated_copy_target()
    fit = das.fit_location(target, COPY, "out", Location(MLP0), das.DASConfig(k=2, n_train=32, steps=8))
    info = probe(target.model)
    whole, fitted = resolve(target.model, Location(MLP0), info), resolve(target.model, fit.location, info)
    basis = subspace_matrix(fit.location.subspace).float()
    cfg = das.DASConfig(k=2, n_train=32, steps=8)
    from mechsynth.synth.check import split

    inputs = split.draw(target.task.sample, cfg.n_train, cfg.seed, train=True)
    for group in das._groups(target, COPY, "out", whole, cfg, inputs):
        src = group.sources[0]
        with torch.no_grad():
            trained_on = das._patched_logits(target, whole, group, src, basis)
        values = fitted.read(group.source_acts)[src]
        checked, _ = run(target.model, group.tokens, [Edit(fitted, values, group.positions)])
        assert torch.allclose(trained_on, checked, atol=1e-5)


def test_on_a_causal_network_the_stacked_step_has_the_per_length_objective():
    """Right-padded and stacked, the length groups of a causal network (LayerNorm, GPT-2 style) give
    each row the logits and the objective of its own group's pass, for any basis; a bidirectional
    network is not stacked."""
    import dataclasses

    from mechsynth.models.bridge import build_bridge
    from tiny_targets import _config

    base = tiny_target(3)
    model = build_bridge({**_config(3), "attention_dir": "causal", "normalization_type": "LN"})
    target = dataclasses.replace(base, model=model)
    assert das._causal(target) and not das._causal(base)
    site = resolve(model, Location(MLP0), probe(model))
    cfg = das.DASConfig(k=2, n_train=64, steps=1, seed=0)
    inputs = split.draw(target.task.sample, cfg.n_train, cfg.seed, train=True)
    groups = das._groups(target, COPY, "out", site, cfg, inputs)
    assert len({int(g.tokens.shape[1]) for g in groups}) > 1
    stacked = das._stacked(target, site, groups, cfg.n_sources)
    basis = torch.linalg.qr(torch.randn(int(site.shape[-1]), 2, generator=torch.Generator().manual_seed(5))).Q
    with torch.no_grad():
        for draw in range(cfg.n_sources):
            logits = das._patched_logits(target, site, stacked, stacked.sources[draw], basis)
            losses, start = [], 0
            for g in groups:
                n, t = g.tokens.shape
                own = das._patched_logits(target, site, g, g.sources[draw], basis)
                assert torch.allclose(logits[start:start + n, :t], own, atol=1e-5)
                if bool(g.masks[draw].any()):
                    losses.append(float(das._loss(target, own, g.targets[draw], g.masks[draw])))
                start += n
            expected = sum(losses) / len(losses)
            assert abs(float(das._stacked_loss(target, logits, stacked, draw)) - expected) < 1e-5
