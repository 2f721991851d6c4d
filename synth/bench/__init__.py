"""The benchmark harness (``mechsynth bench``): suites that run the engine, never part of it.

The engine never imports this package; only the CLI does.
"""
