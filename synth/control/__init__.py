"""Control: the frivolous-circuit controls every accepted hypothesis must beat.

A hypothesis that passes the checks (behaviour, causal scrubbing, interchange) has
shown that it is *consistent* with the network. That is not yet evidence that it is
*what the network does*: a search that tries many programs and placements will find
some that fit by chance, a subnetwork of a random network can mimic a task
(Ramanujan et al. 2020), and a circuit that looks complete in isolation may not be
the one the full network uses. Every candidate that passes the checks therefore goes
through the controls below; each returns its numbers and a verdict, and the final
decision needs all of them plus a multiple-testing-corrected p-value.

Controls (each a pluggable :class:`Control` with a ``name``):

``random_networks``
    The same localisation and checks on re-initialised and weight-shuffled copies of
    the target (``models.reinitialized`` / ``models.shuffled``, several seeds). On
    each copy the hypothesis is scored as claimed *and* after re-localising its
    program there; the better of the two is the copy's score. Passes when the real
    network's statistic beats the best copy by ``min_gap_random_networks``.
``null_correspondences``
    An effect-size gate (not the p-value): the same program with each testable
    variable moved to a random location of the same kind that exists in the model
    (heads for head variables, MLP outputs for MLP variables, a random residual subspace
    of the same size when the claim names dims), in layer order when possible. Primitive
    inputs (``tokens``/``indices`` at the embeddings) stay where they are: they are given,
    not claimed. Draws identical to the claimed correspondence are left out (they are
    not another placement); the real statistic must beat the ``null_quantile`` quantile
    of the others by :func:`required_gap` (``min_gap_null``, or less where the quantile is
    within ``min_gap_null / null_gap_share`` of a perfect score). When no other placement
    exists the gate passes vacuously and says so.
``null_programs``
    An effect-size gate on the first ``program_draws`` draws of the p-value's program
    null (below): the real p-value statistic must beat their ``null_quantile`` quantile
    by :func:`required_gap`.
``necessity``
    Resample-ablate the claimed internal locations inside the *full* network (every
    other component left clean) and measure the share of the damage that resampling
    the whole input does (``necessity_loss_fraction`` from the checks' node-level
    resample ablation). A claimed mechanism the network does not need fails.
``minimality``
    Drop each located variable in turn: resample its location unconditionally inside
    the network, and remove it from the correspondence and rescore. A node for which
    neither costs ``min_node_cost`` is superfluous, and so is a program variable the
    output does not depend on; either fails the control (see :class:`Minimality`).
``broader_distribution``
    Behaviour (program output vs the network's output, mistakes included) on every
    input length and the task's broader distribution, restricted to the parts of that
    distribution the network itself still handles (accuracy >= ``min_network_accuracy``).
``edge_popup`` (opt-in: ``--edge-popup``)
    A top-k weight mask is learned on a randomly initialised network of the same
    architecture so that it mimics the target (:mod:`synth.control.edge_popup`); the
    hypothesis must explain the real network better than it "explains" that masked
    random network, by ``min_gap_edge_popup``.

What the p-value does not say: that the claimed *locations* do the work. A weight-shuffled
network whose output happens to be a simple function of its input is matched by a small
program far better than by random programs of its shape (measured: p = 1/(1 + N) on
shuffled copies of tracr:frac_prevs); such hypotheses fail ``necessity``. The p-value
singles out the program; the gates tie it to the network, and acceptance needs both.

Where each part lives: ``config`` (which controls run, how many draws), ``context`` (what
controls share: cached behaviour, the space of locations, random placements and random
programs), ``nulls`` (controls against matched nulls: random networks, placements, programs,
edge-popup), ``in_network`` (necessity, minimality, the broader distribution), ``results``
(verdicts and the decision), ``stage`` (running every control and the p-values on the
candidates of a run), ``statistics`` (Monte Carlo p-values, Holm), ``edge_popup`` (the
masked random network).
"""
