"""Read a routes file, refusing a bad one with ``file:line: where: problem``.

PyYAML's composer keeps the position of every node; we build plain Python
values from the node tree and remember the line of each path
(``("routes", 2, "match", "path")``), so a pydantic error location or a
pattern error maps back to the line a person has to fix.
"""

from __future__ import annotations

import string
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from meshkit.basis.errors import ConfigError
from meshkit.gateway.config import RoutesFile
from meshkit.gateway.router import PatternError, compile_entry

Loc = tuple[Any, ...]


def _build(node: yaml.Node, loc: Loc, lines: dict[Loc, int]) -> Any:
    lines[loc] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        out: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = key_node.value if key_node.tag == "tag:yaml.org,2002:str" else _scalar(key_node)
            if key in out:
                raise _Located(key_node.start_mark.line + 1, f"key {key!r} appears twice")
            out[key] = _build(value_node, (*loc, key), lines)
            lines[(*loc, key)] = key_node.start_mark.line + 1
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_build(n, (*loc, i), lines) for i, n in enumerate(node.value)]
    return _scalar(node)


def _scalar(node: yaml.Node) -> Any:
    loader = yaml.SafeLoader("")
    try:
        return loader.construct_object(node, deep=True)
    finally:
        loader.dispose()


class _Located(Exception):
    def __init__(self, line: int, message: str) -> None:
        self.line, self.message = line, message


def _where(loc: Loc) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def _line(lines: dict[Loc, int], loc: Loc) -> int:
    # The deepest known ancestor of the error location (a missing key has no line of its own).
    for n in range(len(loc), -1, -1):
        if loc[:n] in lines:
            return lines[loc[:n]]
    return 1


def parse_routes(text: str, source: str = "<routes>") -> RoutesFile:
    """Parse and validate routes from YAML ``text``; raise :class:`ConfigError` naming ``source:line``."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else 1
        raise ConfigError(f"{source}:{line}: not valid YAML: {exc.problem or exc}",
                          reason="invalid_routes", details={"file": source, "line": line}) from exc
    lines: dict[Loc, int] = {}
    try:
        data = _build(node, (), lines) if node is not None else {}
    except _Located as exc:
        raise ConfigError(f"{source}:{exc.line}: {exc.message}", reason="invalid_routes",
                          details={"file": source, "line": exc.line}) from None
    if not isinstance(data, dict):
        raise ConfigError(f"{source}:1: a routes file is a mapping with a 'routes' list", reason="invalid_routes",
                          details={"file": source, "line": 1})
    try:
        routes = RoutesFile.model_validate(data)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            loc = tuple(err["loc"])
            # Union/model-validator noise ("function-after[...]") is not a key a person wrote.
            loc = tuple(p for p in loc if not (isinstance(p, str) and ("[" in p or p.startswith("function-"))))
            line = _line(lines, loc)
            msg = err["msg"].removeprefix("Value error, ")
            if err["type"] == "extra_forbidden":
                msg = f"unknown setting {loc[-1]!r}"
            problems.append((line, f"{source}:{line}: {_where(loc)}: {msg}"))
        problems.sort()
        first = problems[0][0]
        raise ConfigError("; ".join(p for _, p in problems), reason="invalid_routes",
                          details={"file": source, "line": first, "problems": [p for _, p in problems]}) from None
    seen: dict[str, int] = {}
    for i, route in enumerate(routes.routes):
        line = lines.get(("routes", i), 1)
        if route.name in seen:
            raise ConfigError(f"{source}:{line}: routes[{i}].name: route name {route.name!r} is already used "
                              f"by the route at line {seen[route.name]}; names must be unique",
                              reason="invalid_routes", details={"file": source, "line": line})
        seen[route.name] = line
        try:
            entry = compile_entry(None, i, path=route.match.path, prefix=route.match.prefix)
        except PatternError as exc:
            key = "path" if route.match.path is not None else "prefix"
            mline = lines.get(("routes", i, "match", key), lines.get(("routes", i, "match"), line))
            raise ConfigError(f"{source}:{mline}: routes[{i}].match.{key}: {exc}", reason="invalid_routes",
                              details={"file": source, "line": mline}) from None
        for loc, template in _templates(i, route):
            problem = _template_problem(template, entry.params)
            if problem:
                tline = _line(lines, loc)
                raise ConfigError(f"{source}:{tline}: {_where(loc)}: {problem}", reason="invalid_routes",
                                  details={"file": source, "line": tline})
    return routes


def _templates(i: int, route) -> list[tuple[Loc, str]]:
    """The paths of a route filled from its match's parameters: ``rewrite.path``, each aggregate part's."""
    out: list[tuple[Loc, str]] = []
    if route.rewrite is not None and route.rewrite.path is not None:
        out.append((("routes", i, "rewrite", "path"), route.rewrite.path))
    if route.aggregate is not None:
        out += [(("routes", i, "aggregate", "parts", name, "path"), part.path)
                for name, part in route.aggregate.parts.items()]
    return out


def _template_problem(template: str, params: tuple[str, ...]) -> str | None:
    """Why ``template`` cannot be filled from ``params`` (checked here: at request time it was a 500
    for every request, or a silently empty segment), or ``None``."""
    have = ", ".join(f"{{{p}}}" for p in params) or "none"
    try:
        fields = [(name, spec, conv) for _, name, spec, conv in string.Formatter().parse(template)
                  if name is not None]
    except ValueError as exc:
        return f"{template!r} is not a valid path template ({exc}); write parameters as {{name}}, braces as {{{{ }}}}"
    for name, spec, conv in fields:
        if name not in params or spec or conv:
            return (f"{{{name}{'!' + conv if conv else ''}{':' + spec if spec else ''}}} in {template!r} is not a "
                    f"parameter of the route's match (its parameters: {have})")
    return None


def load_routes(path: str | Path) -> RoutesFile:
    """Read and validate the routes file at ``path``."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read routes file {p}: {exc.strerror}; set GATEWAY_ROUTES_FILE to a readable file",
                          reason="invalid_routes", details={"file": str(p)}) from exc
    return parse_routes(text, str(p))


def default_routes_path() -> Path:
    """The routes file shipped with meshkit (catalog under ``/api/catalog/``)."""
    return Path(__file__).with_name("routes.yaml")
