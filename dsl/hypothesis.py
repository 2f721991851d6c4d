"""Hypotheses: a DSL program plus a correspondence from its variables to activations.

A *Location* (``dsl.location``) is the address of an activation: a TransformerLens hook
name, optionally one head and/or a subspace of residual dimensions.

A *Hypothesis* is a program and a correspondence ``{variable name: Location}``.
Variables left out of the correspondence are claimed to live nowhere in particular
(causal scrubbing treats their paths as irrelevant). Hypotheses are immutable,
hashable, print as text and round-trip through JSON and through the hypothesis
file format::

    # any comment
    program:
        x = map(add(1), tokens)
        y = aggregate(select(indices, indices, EQ), x)
    correspondence:
        x: blocks.0.hook_mlp_out
        y: blocks.1.attn.hook_z[0]

Reading a file is strict, because a misread hypothesis is scored as if it were meant:
one ``program:`` section, one ``correspondence:`` section, one location per variable, and
JSON whose fields have the types :meth:`Hypothesis.to_json` writes; anything else is a
one-line :class:`HypothesisError` naming the line. A UTF-8 byte-order mark is ignored.
(A selector output parses; ``synth.check.scoring.score`` refuses it.)
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any
from collections.abc import Mapping

from mechsynth.dsl.errors import HypothesisError
from mechsynth.dsl.location import Location

if TYPE_CHECKING:
    from mechsynth.dsl.program import Program


@dataclass(frozen=True)
class Hypothesis:
    """A program and where each of its (claimed) variables lives in the network."""

    program: Program
    correspondence: Mapping[str, Location] = field(default_factory=dict)

    def __post_init__(self) -> None:
        corr = {}
        for name, loc in dict(self.correspondence).items():
            if isinstance(loc, str):
                loc = Location.parse(loc)
            if not isinstance(loc, Location):
                raise HypothesisError(f"correspondence value for {name!r} is not a Location: {loc!r}")
            corr[name] = loc
        known = set(self.program.variables)
        unknown = sorted(set(corr) - known)
        if unknown:
            raise HypothesisError(
                f"correspondence names {unknown[0]!r}, which is not a variable of the program "
                f"(variables: {', '.join(self.program.variables)})"
            )
        # Keep the program's variable order so printing and hashing are canonical.
        ordered = {v: corr[v] for v in self.program.variables if v in corr}
        object.__setattr__(self, "correspondence", MappingProxyType(ordered))

    def __hash__(self) -> int:
        return hash((str(self.program), tuple(sorted((k, str(v)) for k, v in self.correspondence.items()))))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Hypothesis):
            return NotImplemented
        return str(self.program) == str(other.program) and dict(self.correspondence) == dict(
            other.correspondence
        )

    def with_correspondence(self, correspondence: Mapping[str, Location]) -> Hypothesis:
        return Hypothesis(self.program, correspondence)

    @property
    def has_subspace(self) -> bool:
        """Whether a location was fitted to the network (a learned DAS subspace): its scores must be
        out of sample, and the controls refit it on every null."""
        return any(loc.subspace is not None for loc in self.correspondence.values())

    # --- text -----------------------------------------------------------------------------
    def __str__(self) -> str:
        lines = ["program:"]
        lines += ["    " + line for line in str(self.program).splitlines()]
        lines.append("correspondence:")
        for name, loc in self.correspondence.items():  # a learned subspace's numbers get a readable note
            note = f"  # {loc.describe()}" if loc.subspace is not None else ""
            lines.append(f"    {name}: {loc}{note}")
        return "\n".join(lines) + "\n"

    @classmethod
    def parse(cls, text: str) -> Hypothesis:
        """Read the hypothesis file format (see module docstring) or its JSON form."""
        from mechsynth.dsl import DSLError
        from mechsynth.dsl import parse as parse_program

        text = text.removeprefix("\ufeff")  # editors on Windows start UTF-8 files with a BOM
        if text.lstrip().startswith("{"):
            try:
                data = json.loads(text)
            except json.JSONDecodeError as e:
                raise HypothesisError(f"bad JSON at line {e.lineno}, column {e.colno}: {e.msg}") from None
            except RecursionError:
                raise HypothesisError("JSON nests too deeply for a hypothesis") from None
            return cls.from_json(data)
        section = None
        corr_lines: dict[str, int] = {}  # variable -> the line giving its location
        sections: dict[str, int] = {}  # section -> its header line
        program_lines: list[str] = []
        program_first_line = 0
        corr: dict[str, Location] = {}
        for lineno, raw in enumerate(text.splitlines(), 1):
            line = raw.split("#", 1)[0].rstrip()
            if not line.strip():
                if section == "program":
                    program_lines.append("")
                continue
            head = line.strip()
            if head in ("program:", "correspondence:"):
                if head[:-1] in sections:
                    raise HypothesisError(f"line {lineno}: a second {head!r} section (the first is at line "
                                          f"{sections[head[:-1]]}); a hypothesis has one of each")
                section = head[:-1]
                sections[section] = lineno
                if section == "program":
                    program_first_line = lineno
                continue
            if section == "program":
                program_lines.append(line)
            elif section == "correspondence":
                if ":" not in head:
                    raise HypothesisError(f"line {lineno}: expected 'variable: location', got {head!r}")
                name, loc = head.split(":", 1)
                name = name.strip()
                if name in corr_lines:
                    raise HypothesisError(f"line {lineno}: {name!r} already has a location (line "
                                          f"{corr_lines[name]}); give each variable one location")
                corr_lines[name] = lineno
                try:
                    corr[name] = Location.parse(loc)
                except HypothesisError as e:
                    raise HypothesisError(f"line {lineno}: {e}") from None
            else:
                raise HypothesisError(f"line {lineno}: expected 'program:' or 'correspondence:' first")
        if section is None or not any(line.strip() for line in program_lines):
            raise HypothesisError("no 'program:' section with at least one assignment")
        import textwrap

        program_text = textwrap.dedent("\n".join(program_lines))
        try:
            program = parse_program(program_text)
        except DSLError as e:  # DSL errors carry line numbers relative to the program block
            raise HypothesisError(f"in program (starting line {program_first_line + 1}): {e}") from None
        return cls(program, corr)

    def to_json(self) -> dict[str, Any]:
        return {
            "program": str(self.program),
            "correspondence": {k: str(v) for k, v in self.correspondence.items()},
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Hypothesis:
        from mechsynth.dsl import parse as parse_program

        if not isinstance(data, Mapping) or "program" not in data:
            raise HypothesisError("hypothesis JSON needs a 'program' field")
        if not isinstance(data["program"], str):
            raise HypothesisError("hypothesis JSON: 'program' must be the program text (a string)")
        raw = data.get("correspondence") or {}
        if not isinstance(raw, Mapping):
            raise HypothesisError("hypothesis JSON: 'correspondence' must be an object {variable: location}, "
                                  f"got {type(raw).__name__}")
        corr = {}
        for k, v in raw.items():
            try:
                corr[k] = Location.from_json(v)
            except (TypeError, ValueError) as e:
                if isinstance(e, HypothesisError):
                    raise HypothesisError(f"hypothesis JSON: location of {k!r}: {e}") from None
                raise HypothesisError(f"hypothesis JSON: cannot read the location of {k!r} from {v!r}") \
                    from None
        return cls(parse_program(data["program"]), corr)
