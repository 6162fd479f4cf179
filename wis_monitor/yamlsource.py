"""YAML to plain Python with a line number for every key and item, and ``${...}`` expansion.

Only PyYAML's safe loader is used. Every problem is collected, none raised early, so that the
user sees all of them at once. A file is bounded before it is trusted: at most
:data:`MAX_FILE_BYTES` read from a regular file, at most :data:`MAX_NODES` values (aliases
count each time they are expanded) nested at most :data:`MAX_DEPTH` deep.
"""

from __future__ import annotations

import difflib
import os
import re
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from wis_monitor.errors import Problem
from wis_monitor.redact import register

Loc = tuple[str | int, ...]
_VAR = re.compile(r"\$\{([^}]*)\}")
MAX_FILE_BYTES = 1 << 20
MAX_NODES = 50_000
MAX_DEPTH = 50


@dataclass
class Document:
    """A parsed YAML file: its data, where each part stands, and what went wrong."""

    path: str
    data: Any = None
    lines: dict[Loc, int] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)
    secrets: bool = True  # resolve ${...} strictly
    #: The source text (``${SLACK_URL}``) of each value expanded from ``${...}``: messages
    #: quote that, never the value.
    expanded: dict[Loc, str] = field(default_factory=dict)
    #: The source text of each value with a ``${...}`` that could not be resolved.
    unresolved: dict[Loc, str] = field(default_factory=dict)
    #: With ``secrets=False``: what could not be read, as notes (``PATH:LINE: note: ...``).
    unread: list[Problem] = field(default_factory=list)
    _secret_text: dict[str, str] = field(default_factory=dict)
    _nodes: int = 0

    def line(self, loc: Loc) -> int | None:
        """The line of ``loc``, or of its nearest located parent."""
        for n in range(len(loc), -1, -1):
            found = self.lines.get(tuple(loc[:n]))
            if found is not None:
                return found
        return None

    def problem(self, loc: Loc, message: str) -> None:
        self.problems.append(Problem(self.path, self.line(loc), self.redact(message)))

    def redact(self, message: str) -> str:
        """``message`` with every value expanded from ``${...}`` replaced by its source text."""
        for value in sorted(self._secret_text, key=len, reverse=True):
            message = message.replace(value, self._secret_text[value])
        return message


class _Refused(Exception):
    """A file, or a part of it, that is not even parsed further: why, and where if known."""

    def __init__(self, message: str, line: int | None = None) -> None:
        super().__init__(message)
        self.line = line


def _read_source(path: str) -> str:
    """The text of a regular file of at most MAX_FILE_BYTES of UTF-8; _Refused says why not.

    Opened without blocking and checked before reading: a directory, a FIFO or a device
    (``/dev/zero``) is refused, never read.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError as exc:
        raise _Refused(f"cannot read file: {exc.strerror or exc}") from None
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        raise _Refused("is a directory, not a file" if stat.S_ISDIR(mode)
                          else "is not a regular file")
    with os.fdopen(fd, "rb") as f:
        try:
            data = f.read(MAX_FILE_BYTES + 1)
        except OSError as exc:
            raise _Refused(f"cannot read file: {exc.strerror or exc}") from None
    if len(data) > MAX_FILE_BYTES:
        raise _Refused(f"file is larger than {MAX_FILE_BYTES >> 20} MiB")
    if data.startswith((b"\xff\xfe", b"\xfe\xff")) or b"\x00" in data:
        raise _Refused("file is not UTF-8 text (UTF-16?): save it as UTF-8")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise _Refused("file is not UTF-8 text", line) from None


class _Loader(yaml.SafeLoader):
    """The safe loader, refusing to compose more than MAX_NODES nodes or MAX_DEPTH levels."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self.depth = 0
        self.count = 0

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node | None:
        self.depth += 1
        self.count += 1
        try:
            if self.depth > MAX_DEPTH:
                raise yaml.composer.ComposerError(
                    None, None, f"nested more than {MAX_DEPTH} levels deep",
                    self.peek_event().start_mark)  # type: ignore[no-untyped-call]
            if self.count > MAX_NODES:
                raise yaml.composer.ComposerError(
                    None, None, f"more than {MAX_NODES} values in one file",
                    self.peek_event().start_mark)  # type: ignore[no-untyped-call]
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1


def expand(value: str, env: Mapping[str, str], resolved: list[str] | None = None
           ) -> tuple[str, list[str]]:
    """Replace ``${VAR}`` and ``${credential:NAME}``; return the text and what was missing.

    The values put in are appended to ``resolved``. A credential NAME is a plain file name in
    ``$CREDENTIALS_DIRECTORY``; its contents never appear in a message.
    """
    missing: list[str] = []
    found = [] if resolved is None else resolved

    def sub(m: re.Match[str]) -> str:
        ref = m.group(1).strip()
        if ref.startswith("credential:"):
            name = ref.split(":", 1)[1].strip()
            if not _plain_file_name(name):
                missing.append(f'credential "{name}": the name must be a plain file name in '
                               "$CREDENTIALS_DIRECTORY (no /, not . or ..)")
                return ""
            folder = env.get("CREDENTIALS_DIRECTORY")
            if not folder:
                missing.append(f'credential "{name}" ($CREDENTIALS_DIRECTORY is not set)')
                return ""
            try:
                secret = _read_source(str(Path(folder) / name)).strip()
            except _Refused as exc:
                missing.append(f'credential "{name}" in $CREDENTIALS_DIRECTORY: {exc}')
                return ""
            found.append(secret)
            return secret
        if ref not in env:
            missing.append(f'environment variable "{ref}" is not set')
            return ""
        found.append(env[ref])
        return env[ref]

    def secret(m: re.Match[str]) -> str:
        found = sub(m)
        register(found)  # a ${...} value is a secret: masked in every output
        return found

    return _VAR.sub(secret, value), missing


def _plain_file_name(name: str) -> bool:
    return bool(name) and name not in (".", "..") and "/" not in name and "\x00" not in name


def load(path: str, env: Mapping[str, str] | None = None, *, secrets: bool = True,
         origin: str | None = None) -> Document:
    """Parse ``path``; on failure ``data`` is None and ``problems`` says why.

    ``secrets=False`` (for tools that send nothing) leaves an unresolvable ``${...}`` as it is
    and lists it in ``unread`` instead of ``problems``: a shell has no
    ``$CREDENTIALS_DIRECTORY``. ``origin``
    (``PATH:LINE`` of an include) is named in the problems of a file that cannot be read.
    """
    doc = Document(path, secrets=secrets)
    try:
        text = _read_source(path)
    except _Refused as exc:
        where = f" (included from {origin})" if origin else ""
        doc.problems.append(Problem(path, exc.line, f"{exc}{where}"))
        return doc
    try:
        _parse(text, doc, os.environ if env is None else env)
    except _Refused as exc:
        doc.problems.append(Problem(path, exc.line, str(exc)))
        doc.data = None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        doc.problems.append(Problem(path, mark.line + 1 if mark else None, str(exc.problem)))
        doc.data = None
    except Exception as exc:  # a loader defect must still be a located problem
        doc.problems.append(Problem(path, None, f"cannot load this file ({type(exc).__name__})"))
        doc.data = None
    return doc


def _parse(text: str, doc: Document, env: Mapping[str, str]) -> None:
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        doc.problems.append(Problem(doc.path, line,
                                    f"invalid YAML: {exc.problem or exc.context}"))
        return
    except yaml.YAMLError as exc:
        doc.problems.append(Problem(doc.path, None, f"invalid YAML: {exc}"))
        return
    finally:
        loader.dispose()
    if node is None:
        doc.data = {}
        return
    data = _build(node, (), doc, loader, env)
    doc.data = {} if data is None else data  # a lone "---" is an empty document


def _build(node: yaml.Node, loc: Loc, doc: Document, loader: _Loader,
           env: Mapping[str, str]) -> Any:
    line = node.start_mark.line + 1
    doc._nodes += 1
    if doc._nodes > MAX_NODES:
        raise _Refused(f"more than {MAX_NODES} values in one file (YAML aliases expanding "
                        "too far?)", line)
    if len(loc) > MAX_DEPTH:
        raise _Refused(f"nested more than {MAX_DEPTH} levels deep (a YAML alias that "
                        "contains itself?)", line)
    doc.lines.setdefault(loc, line)
    if isinstance(node, yaml.MappingNode):
        return _build_mapping(node, loc, doc, loader, env)
    if isinstance(node, yaml.SequenceNode):
        return [_build(item, (*loc, i), doc, loader, env) for i, item in enumerate(node.value)]
    try:
        value = loader.construct_object(node, deep=True)
    except Exception as exc:  # e.g. an integer of 5,000 digits
        message = str(exc) if isinstance(exc, yaml.YAMLError) else _bad("value", exc)
        doc.problems.append(Problem(doc.path, line, message))
        return None
    if isinstance(value, str) and "${" in value:
        resolved: list[str] = []
        expanded, missing = expand(value, env, resolved)
        if missing:
            doc.unresolved[loc] = value
        if missing and not doc.secrets:
            for what in missing:
                bad_name = "must be a plain file name" in what
                (doc.problems if bad_name else doc.unread).append(
                    Problem(doc.path, line, what if bad_name else
                            f"note: {what}: not read, so not checked (`run` needs it)"))
            return value
        doc.expanded[loc] = value
        for secret in (expanded, *resolved):
            if len(secret) >= 4:
                doc._secret_text.setdefault(secret, value if secret == expanded else "${...}")
        value = expanded
        for what in missing:
            doc.problems.append(Problem(doc.path, line, what))
    return value


def _build_mapping(node: yaml.MappingNode, loc: Loc, doc: Document, loader: _Loader,
                   env: Mapping[str, str]) -> dict[Any, Any]:
    out: dict[Any, Any] = {}
    loader.flatten_mapping(node)
    for key_node, value_node in node.value:
        key_line = key_node.start_mark.line + 1
        if not isinstance(key_node, yaml.ScalarNode):
            doc.problems.append(Problem(doc.path, key_line, "keys must be plain scalars"))
            continue
        try:
            key = loader.construct_object(key_node, deep=True)
        except Exception as exc:  # as for values
            message = str(exc) if isinstance(exc, yaml.YAMLError) else _bad("key", exc)
            doc.problems.append(Problem(doc.path, key_line, message))
            continue
        if not isinstance(key, str | int | float | bool):
            doc.problems.append(Problem(doc.path, key_line, "keys must be plain scalars"))
            continue
        sub = (*loc, str(key))
        if key in out:
            doc.problems.append(Problem(doc.path, key_line, f'duplicate key "{key}"'))
            continue
        doc.lines[sub] = key_line
        out[key] = _build(value_node, sub, doc, loader, env)
    return out


def _bad(what: str, exc: Exception) -> str:
    """``bad value: ...`` from an exception of Python's own parsing, without its advice."""
    return f"bad {what}: " + str(exc).split(";")[0]


def report_validation(doc: Document, exc: ValidationError, base: tuple[Any, ...],
                      label: str = "", model: type[BaseModel] | None = None) -> None:
    """Each error pydantic found validating ``model`` (at ``base`` in ``doc``) as a located
    problem; an unknown key gets the closest of ``model``'s keys as a hint."""
    for err in exc.errors():
        loc = tuple(str(p) if isinstance(p, str) else p for p in err["loc"])
        full = (*base, *loc)
        where = ".".join(str(p) for p in loc)
        if err["type"] == "extra_forbidden":
            key = str(loc[-1])
            fields = _known_fields(model, loc) if model is not None else []
            hint = difflib.get_close_matches(key, fields, n=1)
            msg = f'unknown key "{key}"' + (f' (did you mean "{hint[0]}"?)' if hint else "")
        elif err["type"] == "missing":
            msg = f'missing required key "{loc[-1]}"'
        elif err["type"] == "model_type":
            what = kind_of(err["input"], doc.expanded.get(full))
            msg = f"{where}: should be a mapping of keys (key: value), not {what}"
        else:
            text = err["msg"].removeprefix("Value error, ")
            msg = f"{where}: {text}" if where else text
        doc.problem(full, label + msg)


def kind_of(value: Any, source: str | None = None) -> str:
    """What ``value`` is, for a message; a value expanded from ``${...}`` is named by its
    ``source`` text, never quoted."""
    if source is not None:
        return f'the text from "{source[:60]}"'
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str):
        return f'the text "{value[:40]}"'
    if isinstance(value, dict):
        return "a mapping"
    return "nothing" if value is None else f"the value {value!r}"[:60]


def _known_fields(root: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    model: Any = root
    for part in loc[:-1]:
        if model is None or isinstance(part, int):
            continue
        info = getattr(model, "model_fields", {}).get(part)
        if info is None:
            return []
        ann = info.annotation
        model = ann if isinstance(ann, type) and issubclass(ann, BaseModel) else None
        for arg in getattr(ann, "__args__", ()):
            if isinstance(arg, type) and issubclass(arg, BaseModel):
                model = arg
    if model is None:
        return []
    return [f.alias or n for n, f in model.model_fields.items()]
