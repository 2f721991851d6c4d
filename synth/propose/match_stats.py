"""Statistics of a match: how well a DSL value explains an activation or an attention pattern.

"v explains activation A" means both directions of "A encodes exactly v": v is decodable
from A (nearest-class-mean classification of A recovers v, :func:`decode_accuracy`) and A is
a function of v (the class means of A by v explain its variance, R^2, :func:`explain_stats`).
A selector matches a head when its uniform pattern is close to the head's
(:func:`selector_agreement`, total variation) or when the head's most-attended key is one the
selector selects (:func:`argmax_agreement`, for trained heads that are soft).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from collections.abc import Sequence

import torch


if TYPE_CHECKING:
    pass


DECODE_ROWS = 8192  # rows on which a variable is decoded from an activation (nearest class mean / probe)


def class_ids(codes: torch.Tensor) -> tuple[torch.Tensor, int]:
    c = torch.nan_to_num(torch.round(codes * 1e6), nan=-7.0e15)
    _, inv = torch.unique(c, return_inverse=True)
    return inv, int(inv.max()) + 1 if inv.numel() else 0


def explain_stats(act: torch.Tensor, codes: torch.Tensor) -> tuple[float, torch.Tensor, torch.Tensor]:
    """(decode accuracy over all dims, per-dim R^2, per-dim variance) of ``codes`` vs ``act``."""
    ids, n = class_ids(codes)
    act = act.double()
    counts = torch.bincount(ids, minlength=n).double()
    sums = torch.zeros(n, act.shape[1], dtype=torch.float64).index_add_(0, ids, act)
    means = sums / counts[:, None]
    resid = act - means[ids]
    total = ((act - act.mean(0)) ** 2).sum(0)
    within = (resid**2).sum(0)
    r2 = 1.0 - within / total.clamp(min=1e-12)
    r2 = torch.where(total > 1e-9, r2, torch.zeros_like(r2))
    return float("nan"), r2, total


def sampled_decode_accuracy(
    act: torch.Tensor, codes: torch.Tensor, cols: Sequence[int] | None = None
) -> float:
    """:func:`decode_accuracy` on every k-th row, k chosen so that about ``DECODE_ROWS`` rows remain.

    The decoders fit in-sample, so a few thousand rows decide as well as every row, at a fraction
    of the least-squares cost on large observed batches. ``cols`` picks columns after the rows are
    sampled, so only the sample is copied.
    """
    step = max(1, act.shape[0] // DECODE_ROWS)
    rows = act[::step]
    return decode_accuracy(rows if cols is None else rows[:, list(cols)], codes[::step])


def decode_accuracy(act: torch.Tensor, codes: torch.Tensor) -> float:
    """In-sample accuracy of decoding ``codes`` from ``act``: the better of two decoders.

    A linear probe (least squares onto one-hot classes, argmax) reads a variable stored in
    its own directions among many others (the residual stream); nearest class mean reads a
    scalar encoding (a numerical variable in one direction) that no argmax of linear scores
    can split into its middle values.
    """
    ids, n = class_ids(codes)
    if n <= 1:
        return 0.0
    act = act.double()
    counts = torch.bincount(ids, minlength=n).double()
    means = torch.zeros(n, act.shape[1], dtype=torch.float64).index_add_(0, ids, act) / counts[:, None]
    scale = act.std(0).clamp(min=1e-6)
    d = torch.cdist(act / scale, means / scale)
    ncm = float((d.argmin(1) == ids).double().mean())
    if ncm >= 0.999:
        return ncm
    x = torch.cat([act - act.mean(0), torch.ones(act.shape[0], 1, dtype=torch.float64)], 1)
    y = torch.nn.functional.one_hot(ids, n).double()
    gram = x.T @ x + 1e-6 * torch.eye(x.shape[1], dtype=torch.float64)
    w = torch.linalg.solve(gram, x.T @ y)
    probe = float(((x @ w).argmax(1) == ids).double().mean())
    return max(ncm, probe)


def explains(act: torch.Tensor, codes: torch.Tensor) -> tuple[float, float]:
    """(decode accuracy, overall R^2): both near 1 when ``act`` encodes exactly ``codes``."""
    _, r2, total = explain_stats(act, codes)
    tot = float(total.sum())
    overall = float((r2 * total).sum() / tot) if tot > 1e-9 else 0.0
    return decode_accuracy(act, codes), overall


def argmax_agreement(
    sel: torch.Tensor, pattern: torch.Tensor, bos: torch.Tensor, rows: torch.Tensor
) -> float:
    """Fraction of query rows whose most-attended key (BOS aside) is one the selector selects.

    Trained heads are soft, so the exact-match statistic (total variation) is too strict;
    where the head puts most of its weight is the claim a selector makes. A row the selector
    leaves empty agrees when the head rests on BOS.
    """
    top = pattern.argmax(-1)  # [batch, query]
    hit = torch.gather(sel, 2, top[..., None])[..., 0].double()
    # Selecting every key always "contains" the argmax: charge a row for the share of the
    # keys it selects, so only a selector as specific as the head scores high.
    frac = sel.double().sum(-1) / pattern.gt(0).sum(-1).clamp(min=1).double()
    empty = ~sel.any(-1)
    ok = torch.where(empty, (bos > 0.5).double(), hit - frac)
    return float(ok[rows].mean()) if bool(rows.any()) else 0.0


def selector_agreement(
    sel: torch.Tensor, pattern: torch.Tensor, bos: torch.Tensor, mask: torch.Tensor
) -> float:
    """1 - mean total-variation distance between a head's pattern and a selector's uniform pattern.

    Compared over non-BOS keys after renormalising (a counting head also attends to BOS by
    design). A query whose selector row is empty must put its mass on BOS (when there is one).
    """
    s = sel.double()
    width = s.sum(-1)
    mass = pattern.sum(-1)
    p = pattern / mass.clamp(min=1e-9)[..., None]
    u = s / width.clamp(min=1)[..., None]
    tv = 0.5 * (p - u).abs().sum(-1)
    nonempty = width > 0
    row = torch.where(nonempty, 1.0 - tv, (mass < 0.5).double())
    row = torch.where(nonempty & (mass < 0.05), torch.zeros_like(row), row)
    return float(row[mask].mean())


def bijective(a: torch.Tensor, b: torch.Tensor) -> bool:
    ia, na = class_ids(a)
    ib, nb = class_ids(b)
    if na != nb:
        return False
    pairs = torch.unique(ia * nb + ib)
    return pairs.numel() == na


def linear_r2(act: torch.Tensor, values: torch.Tensor) -> float:
    """R^2 of the best linear readout of a numerical ``values`` from ``act`` (least squares).

    A numerical variable (a mean over a prefix) takes many values, so a class decoder cannot
    read it; a network stores it as a magnitude along a direction, which a linear readout
    recovers.
    """
    y = values.double()
    if y.numel() < 2 or float(y.var()) < 1e-12:
        return 0.0
    x = torch.cat([act.double() - act.double().mean(0), torch.ones(act.shape[0], 1, dtype=torch.float64)], 1)
    gram = x.T @ x + 1e-6 * torch.eye(x.shape[1], dtype=torch.float64)
    w = torch.linalg.solve(gram, x.T @ y)
    resid = y - x @ w
    return float(1.0 - (resid**2).sum() / ((y - y.mean()) ** 2).sum())


def magnitude_r2(act: torch.Tensor, values: torch.Tensor) -> float:
    """R^2 of ``act`` as ``values`` times one fixed direction, with no offset (zero writes nothing).

    A compiled network writes a numerical variable as a magnitude along its own direction, so
    the activation is exactly ``value * w``. Class means (:func:`explain_stats`) cannot tell that
    variable from an affine relabelling of it (``1 - opens`` for ``opens`` when the two bracket
    fractions sum to one); only the magnitude fit does. Undefined (NaN) values are left out.
    """
    defined = ~torch.isnan(values)
    y = values[defined].double()
    a = act[defined].double().reshape(int(defined.sum()), -1)
    total = float(((a - a.mean(0)) ** 2).sum()) if y.numel() else 0.0
    norm = float((y * y).sum())
    if total <= 1e-12 or norm <= 1e-12:
        return 0.0
    w = (y @ a) / norm
    resid = a - y[:, None] * w[None, :]
    return float(1.0 - (resid**2).sum() / total)
