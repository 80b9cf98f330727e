"""A small parser of Prometheus' text format, strict enough to catch malformed output."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)$")
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"(,|$)')


@dataclass
class Family:
    name: str
    kind: str = ""
    help: str = ""
    samples: dict[tuple[str, frozenset[tuple[str, str]]], float] = field(default_factory=dict)


def parse(text: str) -> dict[str, Family]:
    families: dict[str, Family] = {}
    current: Family | None = None
    for line in text.splitlines():
        if line.startswith("# HELP "):
            name, _, help_text = line[7:].partition(" ")
            current = families.setdefault(name, Family(name))
            current.help = help_text
        elif line.startswith("# TYPE "):
            name, _, kind = line[7:].partition(" ")
            assert kind in {"counter", "gauge", "histogram", "summary", "untyped"}, line
            families.setdefault(name, Family(name)).kind = kind
        else:
            match = _SAMPLE.match(line)
            assert match, f"not a sample line: {line!r}"
            name, _, raw_labels, value = match.groups()
            assert current is not None and name.startswith(current.name), f"{name} outside its family"
            labels = frozenset(_LABEL.findall(raw_labels or "")) if raw_labels else frozenset()
            current.samples[(name, frozenset((k, v) for k, v, _ in labels))] = float(value.replace("+Inf", "inf"))
    return families


def value(families: dict[str, Family], name: str, **labels: str) -> float:
    family_name = re.sub(r"_(bucket|sum|count)$", "", name) if name not in families else name
    return families[family_name].samples[(name, frozenset(labels.items()))]
