"""Check: numbers for one hypothesis on one target, against the network's own outputs.

``patching`` runs forward passes with activations replaced at claimed locations; ``claims``
resolves a hypothesis' locations to sites in the model; ``behaviour`` compares the program's
output with the network's; ``scrub`` is causal scrubbing (loss recovered); ``interchange``
is interchange-intervention accuracy; ``scoring`` assembles them into ``Scores``.
"""
