"""Propose: candidate hypotheses for a target.

``interface`` defines a ``Proposal`` and the ``Proposer`` protocol every source implements;
``model_guided`` reads the network's own activations layer by layer (heads as select +
aggregate, MLPs as maps); ``enumerate`` searches programs bottom-up from input/output pairs;
``llm`` asks a language model, with the prompt built by ``llm_prompt``.
"""
