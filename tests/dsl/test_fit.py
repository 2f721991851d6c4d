"""dsl.fit: modular closed forms for tables a modular-arithmetic network computes."""

from __future__ import annotations

import random

import torch

from mechsynth.dsl.fit import fit_table
from mechsynth.dsl.functions import to_torch


def _pairs(n: int, p: int, seed: int = 0) -> list[tuple[int, int]]:
    every = [(a, b) for a in range(p) for b in range(p)]
    return random.Random(seed).sample(every, n)


def test_modular_sum_on_a_sample_of_pairs_is_a_closed_form() -> None:
    dom = _pairs(150, 23)
    fn = fit_table(dom, [(a + b) % 23 for a, b in dom], 2)
    assert str(fn) == "Mod(x + y, 23)"
    # The closed form is the function on pairs it never saw (a reference evaluation).
    x = torch.arange(23, dtype=torch.float64)[:, None].expand(23, 23)
    y = torch.arange(23, dtype=torch.float64)[None, :].expand(23, 23)
    got = to_torch(fn.params[0])(x, y)
    assert torch.equal(got, (x + y) % 23)


def test_modular_forms_with_coefficients_and_offset() -> None:
    dom = _pairs(150, 23, seed=1)
    assert str(fit_table(dom, [(a - b) % 23 for a, b in dom], 2)) == "Mod(x - y, 23)"
    assert str(fit_table(dom, [(2 * a + b + 3) % 23 for a, b in dom], 2)) == "Mod(2*x + y + 3, 23)"
    one = [(a,) for a in range(12)]
    assert str(fit_table(one, [(3 * a + 1) % 7 for (a,) in one], 1)) == "Mod(3*x + 1, 7)"


def test_non_modular_tables_stay_tables_and_linear_stays_linear() -> None:
    dom = _pairs(150, 23, seed=2)
    assert str(fit_table(dom, [a + b for a, b in dom], 2)) == "add"
    product = fit_table(dom, [(a * b) % 23 for a, b in dom], 2)
    assert product.name == "table"  # no small-coefficient modular form is the product
    # One wrong entry (a network's mistake) is no modular form either: the fit is exact.
    outs = [(a + b) % 23 for a, b in dom]
    outs[0] = (outs[0] + 1) % 23
    assert fit_table(dom, outs, 2).name == "table"


def test_below_full_agreement_a_modular_form_survives_a_few_wrong_entries() -> None:
    dom = _pairs(150, 23, seed=3)
    outs = [(a + b) % 23 for a, b in dom]
    for i in (0, 5, 9):  # a network's mistakes, one of them on the first point
        outs[i] = (outs[i] + 4) % 23
    assert fit_table(dom, outs, 2, min_agreement=0.95).params[0] == fit_table(
        dom, [(a + b) % 23 for a, b in dom], 2).params[0]
    assert fit_table(dom, outs, 2, min_agreement=0.999).name == "table"
