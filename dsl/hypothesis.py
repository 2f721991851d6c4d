"""Hypotheses: a DSL program plus a correspondence from its variables to activations.

A *Location* is the address of an activation inside a TransformerLens model. We do
not invent a naming scheme: a location is a TransformerLens hook name, optionally
narrowed to one attention head (for hooks with a head axis, such as
``blocks.0.attn.hook_z``) and/or to a subspace of residual-stream dimensions (for
hooks whose last axis is ``d_model``, such as ``blocks.0.hook_mlp_out``; tracr labels
every residual dimension with the variable it holds). Values are read per sequence
position.

Text form of a location (used in hypothesis files, JSON and reports)::

    blocks.0.hook_mlp_out                 the whole MLP output
    blocks.1.attn.hook_z[2]               head 2 of layer 1
    blocks.0.hook_mlp_out[dims=3,4,5]     residual dimensions 3, 4, 5 of the MLP output

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
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any
from collections.abc import Mapping

if TYPE_CHECKING:
    from dsl import Program


class HypothesisError(ValueError):
    """A hypothesis or location that cannot be read or does not fit the program."""


_LOCATION_RE = re.compile(r"^\s*(?P<hook>[A-Za-z_][\w.]*)\s*(?:\[(?P<args>[^\]]*)\])?\s*$")


@dataclass(frozen=True, order=True)
class Location:
    """Where a variable lives: a TransformerLens hook name, an optional head, optional dims."""

    hook: str
    head: int | None = None
    dims: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        if not self.hook or not re.fullmatch(r"[A-Za-z_][\w.]*", self.hook):
            raise HypothesisError(f"bad hook name {self.hook!r}")
        if self.head is not None and (not isinstance(self.head, int) or self.head < 0):
            raise HypothesisError(f"head index must be a non-negative int, got {self.head!r}")
        if self.dims is not None:
            dims = tuple(int(d) for d in self.dims)
            if not dims or any(d < 0 for d in dims):
                raise HypothesisError(f"dims must be non-empty non-negative ints, got {self.dims!r}")
            object.__setattr__(self, "dims", dims)

    @property
    def layer(self) -> int | None:
        """The block index this hook belongs to, or None for embeddings/final hooks."""
        m = re.match(r"blocks\.(\d+)\.", self.hook)
        return int(m.group(1)) if m else None

    @property
    def component(self) -> str:
        """A coarse name of the writing component: 'attn', 'mlp', 'embed', 'pos_embed', 'resid'..."""
        if ".attn." in self.hook or self.hook.endswith("hook_attn_out"):
            return "attn"
        if ".mlp." in self.hook or self.hook.endswith("hook_mlp_out"):
            return "mlp"
        if self.hook.startswith("hook_pos_embed"):
            return "pos_embed"
        if self.hook.startswith("hook_embed"):
            return "embed"
        return "resid"

    def __str__(self) -> str:
        args = []
        if self.head is not None:
            args.append(str(self.head))
        if self.dims is not None:
            args.append("dims=" + ",".join(map(str, self.dims)))
        return self.hook + (f"[{', '.join(args)}]" if args else "")

    @classmethod
    def parse(cls, text: str) -> Location:
        text = text.strip()
        m = _LOCATION_RE.match(text)
        if not m:
            raise HypothesisError(f"cannot read location {text!r}: expected e.g. 'blocks.0.attn.hook_z[1]'")
        head: int | None = None
        dims: tuple[int, ...] | None = None
        args = m.group("args")
        if args is not None:
            # Split on commas that are not inside the dims list: "2, dims=3,4" -> head, dims.
            parts = re.split(r",\s*(?=dims=)", args.strip())
            for part in parts:
                part = part.strip().rstrip(",")
                try:
                    if part.startswith("dims="):
                        dims = tuple(int(d) for d in part[5:].split(",") if d.strip())
                    elif part:
                        head = int(part)
                except ValueError:
                    raise HypothesisError(f"cannot read location {text!r}: bad index {part!r}") from None
        return cls(m.group("hook"), head, dims)

    def to_json(self) -> dict[str, Any]:
        return {"hook": self.hook, "head": self.head, "dims": list(self.dims) if self.dims else None}

    @classmethod
    def from_json(cls, data: Any) -> Location:
        if isinstance(data, str):
            return cls.parse(data)
        if not isinstance(data, dict) or "hook" not in data:
            raise HypothesisError(f"cannot read location from {data!r}")
        dims = data.get("dims")
        return cls(data["hook"], data.get("head"), tuple(dims) if dims else None)


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

    # --- text -----------------------------------------------------------------------------
    def __str__(self) -> str:
        lines = ["program:"]
        lines += ["    " + line for line in str(self.program).splitlines()]
        lines.append("correspondence:")
        lines += [f"    {name}: {loc}" for name, loc in self.correspondence.items()]
        return "\n".join(lines) + "\n"

    @classmethod
    def parse(cls, text: str) -> Hypothesis:
        """Read the hypothesis file format (see module docstring) or its JSON form."""
        from dsl import DSLError
        from dsl import parse as parse_program

        if text.lstrip().startswith("{"):
            try:
                return cls.from_json(json.loads(text))
            except json.JSONDecodeError as e:
                raise HypothesisError(f"bad JSON at line {e.lineno}, column {e.colno}: {e.msg}") from None
        section = None
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
                section = head[:-1]
                if section == "program":
                    program_first_line = lineno
                continue
            if section == "program":
                program_lines.append(line)
            elif section == "correspondence":
                if ":" not in head:
                    raise HypothesisError(f"line {lineno}: expected 'variable: location', got {head!r}")
                name, loc = head.split(":", 1)
                try:
                    corr[name.strip()] = Location.parse(loc)
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
        from dsl import parse as parse_program

        if not isinstance(data, Mapping) or "program" not in data:
            raise HypothesisError("hypothesis JSON needs a 'program' field")
        corr = {k: Location.from_json(v) for k, v in (data.get("correspondence") or {}).items()}
        return cls(parse_program(data["program"]), corr)
