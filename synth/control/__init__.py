"""Control: the frivolous-circuit controls every accepted hypothesis must beat.

Each control family runs the same checks on a matched null (re-initialised and shuffled
networks, random placements, random programs) or inside the full network (necessity,
minimality, the broader distribution); ``statistics`` turns the null draws into p-values and
the multiple-testing correction; ``edge_popup`` is the Ramanujan et al. masked-random-network
control.
"""
