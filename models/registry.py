"""Target specs: how a user names a target, and the table of every known target.

A target spec is `<kind>:<name>`:

    tracr:<name>      a tracr lib example compiled and converted (ground truth known)
    trained:<name>    a small transformer trained here (checkpoint in models/checkpoints/)
    file:<path.py>    a user module defining `target() -> models.Target`

`load_target` resolves a spec; an unknown name is a `TargetError` that lists the closest
known specs (difflib). `list_targets` is the table `mechsynth targets` prints.
"""

from __future__ import annotations

import difflib

import torch

from mechsynth.models.target import Target, TargetError, TargetRow

KINDS = ("tracr", "trained", "file")


def known_specs() -> list[str]:
    """Every `tracr:` and `trained:` spec (file: targets are open-ended)."""
    from mechsynth.models.tracr_targets import lib_examples
    from mechsynth.models.zoo import zoo_names

    return [f"tracr:{n}" for n in lib_examples()] + [f"trained:{n}" for n in zoo_names()]


def _unknown(spec: str) -> TargetError:
    """The error for an unknown spec, naming the closest known specs (by the name after 'kind:')."""
    specs = known_specs()
    kind, _, bare = spec.rpartition(":")
    names = sorted({s.split(":", 1)[1] for s in specs})
    wanted = set(difflib.get_close_matches(bare, names, n=3, cutoff=0.6))
    close = [s for s in specs if s.split(":", 1)[1] in wanted]
    close.sort(key=lambda s: (not s.startswith(kind + ":"), s))  # same kind first
    if close:
        hint = f"; did you mean {', '.join(close[:4])}?"
    elif kind in ("tracr", "trained"):
        hint = f"; {kind} targets: {', '.join(s.split(':', 1)[1] for s in specs if s.startswith(kind + ':'))}"
    else:
        hint = f"; a spec is one of {', '.join(k + ':<name>' for k in KINDS[:2])}, file:<path.py>"
    return TargetError(f"unknown target {spec!r}{hint}")


def load_target(spec: str, device: str | torch.device | None = None) -> Target:
    """Resolve a target spec (see module docstring); TargetError with one clear line if it fails.

    ``device`` (``auto``, ``cpu``, ``cuda``, ``cuda:N``; default: where the target is built, the
    CPU) puts the network there (`Target.on`); an unavailable device fails before the build.
    """
    if device is not None:
        from mechsynth.models.device import resolve_device

        resolve_device(device)  # a bad or missing device is one line, before a slow build
        return _load(spec).on(device)
    return _load(spec)


def _load(spec: str) -> Target:
    if not isinstance(spec, str) or ":" not in spec:
        raise _unknown(str(spec))
    kind, name = spec.split(":", 1)
    if kind == "tracr":
        from mechsynth.models.tracr_targets import lib_examples, tracr_target

        if name not in lib_examples():
            raise _unknown(spec)
        return tracr_target(name)
    if kind == "trained":
        from mechsynth.models.zoo import load_trained, zoo_names

        if name not in zoo_names():
            raise _unknown(spec)
        return load_trained(name)
    if kind == "file":
        from mechsynth.models.byo import load_file_target

        return load_file_target(name)
    raise _unknown(spec)


def list_targets() -> list[TargetRow]:
    """Every tracr and trained target with its size and measured accuracy (no network is built:
    tracr rows come from the recorded manifest, trained rows from checkpoint metadata)."""
    from mechsynth.models.tracr_targets import lib_examples, read_manifest
    from mechsynth.models.zoo import zoo_names, zoo_row

    manifest = read_manifest()
    rows: list[TargetRow] = []
    for name, example in lib_examples().items():
        m = manifest.get(name)
        if m is None:  # not recorded yet: measure it now (compiles; takes seconds)
            from mechsynth.models.tracr_targets import measure

            m = measure(name)
        rows.append(TargetRow(f"tracr:{name}", "tracr", m["layers"], m["heads"], m["d_model"], m["accuracy"],
                              description=example.description))
    rows += [zoo_row(name) for name in zoo_names()]
    return rows
