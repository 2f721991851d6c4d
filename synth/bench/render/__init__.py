"""BENCHMARKS.md from the results (``bench.json``): one module per section.

- ``page`` — :func:`render_markdown`: the header (machine, versions, commit, memory), then
  each section present in the results, the CI baseline check and any failed suite;
- ``recovery``, ``acdc``, ``controls``, ``perf`` — one section each;
- ``table`` — the Markdown table every section uses.

Rendering reads only the results, so a committed ``bench.json`` renders again without running anything.
"""

from mechsynth.synth.bench.render.page import render_markdown

__all__ = ["render_markdown"]
