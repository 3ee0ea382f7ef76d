"""Typed, validated views of `params.yaml` sections.

`params.yaml` is the single source of every default: the dataclasses here carry
types and allowed ranges but no default values, so a key missing from the file
is an error rather than a silently different behaviour. Every problem is
reported as one line naming the exact key, e.g. `params.yaml: distill.lr: must be > 0 (got -1)`.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from pathlib import Path
from typing import Any, ClassVar, Literal, get_args, get_origin

import yaml

from .errors import RecombError


def _first_duplicate(node, path: tuple[str, ...] = ()) -> tuple[str, int] | None:
    """(dotted key, line) of the first key written twice in one mapping of a composed YAML document: YAML would
    keep the last one silently."""
    if isinstance(node, yaml.MappingNode):
        seen = set()
        for key_node, value_node in node.value:
            key = (*path, str(key_node.value))
            if key_node.value in seen:
                return ".".join(key), key_node.start_mark.line + 1
            seen.add(key_node.value)
            if found := _first_duplicate(value_node, key):
                return found
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            if found := _first_duplicate(item, (*path, str(index))):
                return found
    return None


def read_text(path: Path) -> str:
    """A text file the user may have damaged: unreadable or not UTF-8 is a one-line error naming it."""
    try:
        return path.read_text()
    except OSError as exc:
        raise RecombError(f"{path}: cannot read ({exc.strerror})") from None
    except UnicodeDecodeError:
        raise RecombError(f"{path}: not a text file (not UTF-8)") from None


def not_yaml(name: str, exc: yaml.YAMLError) -> RecombError:
    """The one-line error of a file that is not valid YAML, at the line YAML names when it names one."""
    mark = getattr(exc, "problem_mark", None)
    return RecombError(f"{name}: not valid YAML{f' at line {mark.line + 1}' if mark else ''}")


def pipeline_file(text: str, name: str) -> dict:
    """A DVC pipeline file (dvc.yaml, dvc.lock) as a mapping; a damaged one is a one-line error naming it."""
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise not_yaml(name, exc) from None
    if not isinstance(data, dict):
        raise RecombError(f"{name}: expected a mapping (a DVC pipeline file)")
    return data


def pipeline_stages(path: str | Path) -> dict:
    """The `stages` of a dvc.yaml: the one declaration of what each stage reads and writes."""
    return pipeline_file(read_text(Path(path)), str(path)).get("stages") or {}


def declared_params(stage: dict) -> list[str]:
    """The params keys a dvc.yaml stage declares (`params.yaml:` alone stands for the whole file)."""
    keys = []
    for entry in stage.get("params", []):
        if isinstance(entry, dict):
            for file, listed in entry.items():
                keys += [file] if listed is None else list(listed)
        else:
            keys.append(entry)
    return keys


def load_params(path: str | Path, sections: tuple[str, ...] | None = None) -> dict:
    """Read the whole params file; a missing or malformed file is a one-line error.

    With `sections`, a top-level section outside them is refused too (a typo such as
    `finetun:` would otherwise be ignored while the stage reads the defaults).
    """
    path = Path(path)
    if not path.is_file():
        raise RecombError(f"{path}: params file not found")
    text = read_text(path)
    try:
        duplicate = _first_duplicate(yaml.compose(text, Loader=yaml.SafeLoader))
        if duplicate:
            raise RecombError(f"{path}: key '{duplicate[0]}' is written twice (line {duplicate[1]})")
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise not_yaml(str(path), exc) from None
    if not isinstance(data, dict):
        raise RecombError(f"{path}: expected a mapping of sections at the top level")
    unknown = [name for name in data if sections is not None and name not in sections]
    if unknown:
        raise RecombError(f"{path}: {unknown[0]}: unknown section (expected one of: {', '.join(sections)})")
    return data


class Section:
    """Base for a params section; subclasses are dataclasses and may override `check`.

    A class that checks whole top-level sections of params.yaml names them in `sections`; the `params` stage
    checks every such class's `validate`, so the list of sections and their rules live with the classes.
    """

    _where: str = ""
    sections: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def validate(cls, params: dict) -> object:
        """Its section checked as its stage checks it; a rule spanning sections overrides this."""
        return cls.from_params(params, cls.sections[0])

    @classmethod
    def from_params(cls, params: dict, name: str, source: str = "params.yaml"):
        if name not in params:
            raise RecombError(f"{source}: section '{name}' is missing")
        return cls.from_mapping(params[name], f"{source}: {name}")

    @classmethod
    def from_mapping(cls, data: Any, where: str):
        if not isinstance(data, dict):
            raise RecombError(f"{where}: expected a mapping, got {type(data).__name__}")
        hints = typing.get_type_hints(cls)
        fields = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(data) - set(fields))
        if unknown:
            raise RecombError(f"{where}.{unknown[0]}: unknown key (expected one of: {', '.join(fields)})")
        missing = [f for f in fields if f not in data]
        if missing:
            raise RecombError(f"{where}.{missing[0]}: missing key")
        values = {f: _coerce(data[f], hints[f], f"{where}.{f}") for f in fields}
        obj = cls(**values)
        object.__setattr__(obj, "_where", where)
        obj.check()
        return obj

    def check(self) -> None:
        """Range checks; call `self.require(...)` for each rule."""

    def require(self, ok: bool, key: str, rule: str) -> None:
        if not ok:
            raise RecombError(f"{self._where}.{key}: {rule} (got {getattr(self, key)!r})")

    def to_dict(self) -> dict:
        return {f.name: _plain(getattr(self, f.name)) for f in dataclasses.fields(self)}


def _plain(value: Any) -> Any:
    if isinstance(value, Section):
        return value.to_dict()
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", str(tp))


def _coerce(value: Any, tp: Any, where: str) -> Any:
    origin = get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        options = get_args(tp)
        if value is None and type(None) in options:
            return None
        inner = [o for o in options if o is not type(None)]
        if len(inner) == 1:
            return _coerce(value, inner[0], where)
        for option in inner:  # the first that takes the value, e.g. float | Literal["task"]
            try:
                return _coerce(value, option, where)
            except RecombError:
                pass
        kinds = [f"one of {', '.join(map(str, get_args(o)))}" if get_origin(o) is Literal else f"a {_type_name(o)}"
                 for o in inner]
        raise RecombError(f"{where}: must be {' or '.join(kinds)} (got {value!r})")
    if origin is Literal:
        allowed = get_args(tp)
        if value not in allowed:
            raise RecombError(f"{where}: must be one of {', '.join(map(str, allowed))} (got {value!r})")
        return value
    if origin is list:
        if not isinstance(value, list):
            raise RecombError(f"{where}: expected a list (got {value!r})")
        (item,) = get_args(tp)
        return [_coerce(v, item, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is dict or tp is dict:
        if not isinstance(value, dict):
            raise RecombError(f"{where}: expected a mapping (got {value!r})")
        return dict(value)
    if isinstance(tp, type) and issubclass(tp, Section):
        return tp.from_mapping(value, where)
    if tp is bool:
        if not isinstance(value, bool):
            raise RecombError(f"{where}: expected true or false (got {value!r})")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise RecombError(f"{where}: expected an integer (got {value!r})")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise RecombError(f"{where}: expected a number (got {value!r})")
        if value != value or value in (float("inf"), float("-inf")):
            raise RecombError(f"{where}: must be finite (got {value!r})")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise RecombError(f"{where}: expected a string (got {value!r})")
        return value
    raise TypeError(f"unsupported params type {_type_name(tp)} at {where}")
