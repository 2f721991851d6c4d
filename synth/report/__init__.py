"""Report: what a run found, for people and notebooks.

``markdown`` writes a run's report.md; ``recovery`` compares a hypothesis with a known
ground truth; ``inspection`` builds pandas tables of a run; ``plots`` draws them.
"""
