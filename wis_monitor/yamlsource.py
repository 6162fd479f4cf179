"""YAML to plain Python with a line number for every key and item, and ``${...}`` expansion.

Only PyYAML's safe loader is used. Every problem is collected, none raised early, so that the
user sees all of them at once.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from wis_monitor.errors import Problem
from wis_monitor.redact import register

Loc = tuple[str | int, ...]
_VAR = re.compile(r"\$\{([^}]*)\}")


@dataclass
class Document:
    """A parsed YAML file: its data, where each part stands, and what went wrong."""

    path: str
    data: Any = None
    lines: dict[Loc, int] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)
    secrets: bool = True  # resolve ${...} strictly

    def line(self, loc: Loc) -> int | None:
        """The line of ``loc``, or of its nearest located parent."""
        for n in range(len(loc), -1, -1):
            found = self.lines.get(tuple(loc[:n]))
            if found is not None:
                return found
        return None

    def problem(self, loc: Loc, message: str) -> None:
        self.problems.append(Problem(self.path, self.line(loc), message))


def expand(value: str, env: Mapping[str, str]) -> tuple[str, list[str]]:
    """Replace ``${VAR}`` and ``${credential:NAME}``; return the text and what was missing."""
    missing: list[str] = []

    def sub(m: re.Match[str]) -> str:
        ref = m.group(1).strip()
        if ref.startswith("credential:"):
            name = ref.split(":", 1)[1].strip()
            folder = env.get("CREDENTIALS_DIRECTORY")
            if not folder:
                missing.append(f'credential "{name}" ($CREDENTIALS_DIRECTORY is not set)')
                return ""
            try:
                return (Path(folder) / name).read_text().strip()
            except OSError:
                missing.append(f'credential "{name}" (no readable file in $CREDENTIALS_DIRECTORY)')
                return ""
        if ref not in env:
            missing.append(f'environment variable "{ref}" is not set')
            return ""
        return env[ref]

    def secret(m: re.Match[str]) -> str:
        found = sub(m)
        register(found)  # a ${...} value is a secret: masked in every output
        return found

    return _VAR.sub(secret, value), missing


def load(path: str, env: Mapping[str, str] | None = None, *, secrets: bool = True
         ) -> Document:
    """Parse ``path``; on failure ``data`` is None and ``problems`` says why.

    ``secrets=False`` (for tools that send nothing) leaves an unresolvable ``${...}`` as it is
    instead of reporting it: a shell has no ``$CREDENTIALS_DIRECTORY``.
    """
    doc = Document(path, secrets=secrets)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        doc.problems.append(Problem(path, None, f"cannot read file: {exc.strerror or exc}"))
        return doc
    except UnicodeDecodeError:
        doc.problems.append(Problem(path, None, "file is not UTF-8 text"))
        return doc
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        doc.problems.append(Problem(path, line, f"invalid YAML: {exc.problem or exc.context}"))
        return doc
    except yaml.YAMLError as exc:
        doc.problems.append(Problem(path, None, f"invalid YAML: {exc}"))
        return doc
    finally:
        loader.dispose()
    if node is None:
        doc.data = {}
        return doc
    doc.data = _build(node, (), doc, loader, os.environ if env is None else env)
    return doc


def _build(node: yaml.Node, loc: Loc, doc: Document, loader: yaml.SafeLoader,
           env: Mapping[str, str]) -> Any:
    doc.lines.setdefault(loc, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        out: dict[Any, Any] = {}
        loader.flatten_mapping(node)
        for key_node, value_node in node.value:
            try:
                key = loader.construct_object(key_node, deep=True)
            except yaml.YAMLError as exc:
                doc.problems.append(Problem(doc.path, key_node.start_mark.line + 1, str(exc)))
                continue
            if not isinstance(key, str | int | float | bool):
                doc.problems.append(
                    Problem(doc.path, key_node.start_mark.line + 1, "keys must be plain scalars")
                )
                continue
            sub = (*loc, str(key))
            if key in out:
                doc.problems.append(
                    Problem(doc.path, key_node.start_mark.line + 1, f'duplicate key "{key}"')
                )
                continue
            doc.lines[sub] = key_node.start_mark.line + 1
            out[key] = _build(value_node, sub, doc, loader, env)
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_build(item, (*loc, i), doc, loader, env) for i, item in enumerate(node.value)]
    try:
        value = loader.construct_object(node, deep=True)
    except yaml.YAMLError as exc:
        doc.problems.append(Problem(doc.path, node.start_mark.line + 1, str(exc)))
        return None
    if isinstance(value, str) and "${" in value:
        expanded, missing = expand(value, env)
        if missing and not doc.secrets:
            return value
        value = expanded
        for what in missing:
            doc.problems.append(Problem(doc.path, node.start_mark.line + 1, what))
    return value
