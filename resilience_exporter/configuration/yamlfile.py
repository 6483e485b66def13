"""YAML files whose every rejection names the file, the line and the key path.

Both the configuration and the web configuration are read through here, so that a typo in
either is found by reading one line of output.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

KeyPath = tuple[str | int, ...]
# libyaml's parser when PyYAML has it (a fleet's file of 10,000 targets reads in a second
# instead of ten); the same nodes, marks and errors either way.
_LOADER: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


@dataclass(frozen=True, slots=True)
class ConfigIssue:
    file: str
    line: int | None
    key: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        return f"{where}: {self.key or '<top level>'}: {self.message}"


class ConfigError(Exception):
    def __init__(self, issues: list[ConfigIssue]) -> None:
        self.issues = issues
        super().__init__("\n".join(str(issue) for issue in issues))


def dotted(path: KeyPath) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


class YamlDocument:
    """A parsed YAML document, the line of every key in it, and the issues found so far."""

    def __init__(self, text: str, file: str) -> None:
        self.file = file
        self.lines: dict[KeyPath, int] = {}
        self.issues: list[ConfigIssue] = []
        try:
            node = yaml.compose(text, Loader=_LOADER)
            if node is None:
                self.data: Any = {}
                return
            self._index(node, ())
            self.data = _LOADER("").construct_document(node)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
            line = mark.line + 1 if mark is not None else None
            problem = getattr(exc, "problem", None) or str(exc)
            raise ConfigError([ConfigIssue(file, line, "", f"invalid YAML: {problem}")]) from None

    def _index(self, node: yaml.Node, path: KeyPath) -> None:
        self.lines.setdefault(path, node.start_mark.line + 1)
        if isinstance(node, yaml.MappingNode):
            seen: set[str] = set()
            for key_node, value_node in node.value:
                key = str(key_node.value)
                key_line = key_node.start_mark.line + 1
                if key in seen:
                    self.issues.append(
                        ConfigIssue(self.file, key_line, dotted((*path, key)), "duplicate key")
                    )
                seen.add(key)
                self.lines[(*path, key)] = key_line
                self._index(value_node, (*path, key))
        elif isinstance(node, yaml.SequenceNode):
            for index, item in enumerate(node.value):
                self._index(item, (*path, index))

    def line_of(self, path: KeyPath) -> int | None:
        while path not in self.lines and path:
            path = path[:-1]
        return self.lines.get(path)

    def issue(self, path: KeyPath, message: str) -> ConfigIssue:
        return ConfigIssue(self.file, self.line_of(path), dotted(path), message)

    def add_issue(self, path: KeyPath, message: str) -> None:
        self.issues.append(self.issue(path, message))

    def add_validation_errors(self, exc: ValidationError, prefix: KeyPath) -> None:
        """pydantic's errors, each placed at its key under `prefix`."""
        for error in exc.errors(include_url=False, include_input=False):
            path = (*prefix, *(p for p in error["loc"] if isinstance(p, str | int)))
            message = str(error["msg"]).removeprefix("Value error, ")
            if error["type"] == "extra_forbidden":
                message = "unknown key"
            self.add_issue(path, message)

    def raise_issues(self) -> None:
        if self.issues:
            raise ConfigError(self.issues)


def read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except OSError as exc:
        issue = ConfigIssue(str(path), None, "", f"cannot read: {exc.strerror}")
        raise ConfigError([issue]) from None
    except UnicodeDecodeError:
        raise ConfigError([ConfigIssue(str(path), None, "", "not UTF-8 text")]) from None


M = TypeVar("M", bound=BaseModel)


def parse_model(
    model: type[M], text: str, file: str, *, context: Mapping[str, Any] | None = None
) -> M:
    """Validate a whole YAML document against `model` (pydantic validators see `context`),
    with file:line:key errors."""
    doc = YamlDocument(text, file)
    if not isinstance(doc.data, dict):
        raise ConfigError([doc.issue((), "the file must hold a mapping")])
    try:
        result = model.model_validate(doc.data, context=dict(context or {}))
    except ValidationError as exc:
        doc.add_validation_errors(exc, ())
    doc.raise_issues()
    return result
