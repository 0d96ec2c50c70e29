"""Merchandising rules as data: read from a JSON or YAML file (or a dict), checked strictly, kept as `RuleSet`.

A rules file is `{"rules": [rule, ...]}`; each rule has an `id`, exactly one query pattern (`query`: the
whole query, `contains`: a run of whole words in it, `any: true`: every query) and at least one action:
`pin` ([{product, position}], position 1 = first), `boost` / `bury` (a condition like a `where` filter:
"in_stock=false", ["price<=20", "brand=Acme"], or {"in_stock": false, "price": {"min": 5, "max": 20}})
and `hide` (product ids). Every problem is a RulesError naming the file, the rule (number and id) and the
field. Checks against a catalog (product ids, columns, values) are made where rules meet an index
(engine.query.rules.apply).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from numbers import Real
from pathlib import Path
from typing import Any, Mapping

from vitrina.engine.errors import QueryError
from vitrina.engine.query.filters import MAX_CONDITIONS, MAX_VALUES, parse_where

MAX_FILE_BYTES = 8 * 1024 * 1024  # a rules file larger than this is refused before it is parsed
MAX_RULES = 10_000
MAX_ID_CHARS = 128
MAX_PATTERN_CHARS = 256
MAX_CONTAINS_WORDS = 8  # words in a `contains` pattern (bounds the word runs looked up per query)
MAX_POSITION = 100  # the deepest position a product may be pinned at
MAX_PINS = 100  # pins in one rule
MAX_HIDDEN = 1_000  # products one rule may hide
MAX_PRODUCTS_NAMED = 100_000  # pins and hides in the whole file
RULE_KEYS = ("id", "description", "query", "contains", "any", "pin", "boost", "bury", "hide")
PATTERN_KEYS = ("query", "contains", "any")
ACTION_KEYS = ("pin", "boost", "bury", "hide")
PIN_KEYS = ("product", "position")
RANGE_KEYS = ("min", "max")


class RulesError(QueryError, ValueError):
    """A merchandising rules file (or dict) that cannot be used; the message names the file, rule and field."""


@dataclass(frozen=True)
class Pin:
    product: str
    position: int  # 1 = the first hit


@dataclass(frozen=True)
class Rule:
    """One rule: when `pattern` matches a query (`kind` exact, contains or any), its actions apply."""

    id: str
    kind: str  # "exact" | "contains" | "any"
    pattern: str  # normalised (`normalise_query`); "" for any
    pins: tuple[Pin, ...] = ()
    boost: Mapping[str, Any] | None = None  # a `where` mapping (engine.query.filters): products meeting it rise
    bury: Mapping[str, Any] | None = None  # products meeting it sink
    hide: tuple[str, ...] = ()
    description: str | None = None

    def to_json(self) -> dict[str, Any]:
        """The rule as the file format writes it (what an index stores)."""
        out: dict[str, Any] = {"id": self.id}
        if self.description is not None:
            out["description"] = self.description
        if self.kind == "any":
            out["any"] = True
        else:
            out["query" if self.kind == "exact" else "contains"] = self.pattern
        if self.pins:
            out["pin"] = [{"product": p.product, "position": p.position} for p in self.pins]
        for name in ("boost", "bury"):
            if getattr(self, name) is not None:
                out[name] = _where_json(getattr(self, name))
        if self.hide:
            out["hide"] = list(self.hide)
        return out


@dataclass(frozen=True)
class RuleSet:
    """The rules of one file, in file order (the order they apply in)."""

    rules: tuple[Rule, ...]
    source: str = "rules"

    def to_json(self) -> dict[str, Any]:
        return {"rules": [rule.to_json() for rule in self.rules]}

    def __len__(self) -> int:
        return len(self.rules)


def normalise_query(text: str) -> str:
    """What patterns and queries are compared as: case-folded, whitespace collapsed (punctuation kept)."""
    return " ".join(str(text).casefold().split())


def read_rules_file(path: str | Path) -> RuleSet:
    """A RuleSet from a .json, .yaml or .yml file (at most MAX_FILE_BYTES)."""
    path = Path(path)
    source = str(path)
    if not path.is_file():
        raise RulesError(f"{source}: no such rules file")
    size = path.stat().st_size
    if size > MAX_FILE_BYTES:
        raise RulesError(f"{source}: {size} bytes; a rules file may hold at most {MAX_FILE_BYTES}")
    text = path.read_bytes().decode("utf-8-sig", errors="strict") if size else ""
    suffix = path.suffix.casefold()
    if suffix == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise RulesError(f"{source}, line {exc.lineno}: not valid JSON: {exc.msg}") from None
    elif suffix in (".yaml", ".yml"):
        data = _yaml(text, source)
    else:
        raise RulesError(f"{source}: a rules file is .json, .yaml or .yml, not {path.suffix or 'without a suffix'}")
    return parse_rules(data, source)


def _yaml(text: str, source: str) -> Any:
    import yaml

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f", line {mark.line + 1}" if mark is not None else ""
        raise RulesError(f"{source}{where}: not valid YAML: {getattr(exc, 'problem', None) or exc}") from None


def parse_rules(data: Any, source: str = "rules") -> RuleSet:
    """A RuleSet from the file's data (`{"rules": [...]}`), checked strictly; `source` names it in errors."""
    if not isinstance(data, Mapping):
        raise RulesError(f"{source}: a rules file is an object with a 'rules' list, got {_kind(data)}")
    unknown = [k for k in data if k != "rules"]
    if unknown:
        raise RulesError(f"{source}: unknown key {str(unknown[0])[:40]!r} (a rules file holds only 'rules')")
    items = data.get("rules")
    if not isinstance(items, list):
        raise RulesError(f"{source}: 'rules' must be a list of rules, got {_kind(items)}")
    if len(items) > MAX_RULES:
        raise RulesError(f"{source}: {len(items)} rules; give at most {MAX_RULES}")
    rules, seen, named = [], {}, 0
    for number, item in enumerate(items, start=1):
        rule = _rule(item, f"{source}: rule {number}")
        if rule.id in seen:
            raise RulesError(f"{source}: rule {number} (id {rule.id!r}): id: rule {seen[rule.id]} has the same id")
        seen[rule.id] = number
        named += len(rule.pins) + len(rule.hide)
        if named > MAX_PRODUCTS_NAMED:
            raise RulesError(f"{source}: rule {number} (id {rule.id!r}): the rules pin and hide more than "
                             f"{MAX_PRODUCTS_NAMED} products in all")
        rules.append(rule)
    return RuleSet(tuple(rules), source)


def _rule(item: Any, where: str) -> Rule:
    if not isinstance(item, Mapping):
        raise RulesError(f"{where}: a rule is an object with an id, a pattern and actions, got {_kind(item)}")
    rule_id = item.get("id")
    if not isinstance(rule_id, str) or not rule_id.strip() or len(rule_id) > MAX_ID_CHARS or not rule_id.isprintable():
        raise RulesError(f"{where}: id: give each rule an id, printable text of 1 to {MAX_ID_CHARS} characters "
                         f"(got {_shown(rule_id)})")
    where = f"{where} (id {rule_id!r})"
    unknown = [k for k in item if k not in RULE_KEYS]
    if unknown:
        raise RulesError(f"{where}: unknown key {str(unknown[0])[:40]!r} (keys: {', '.join(RULE_KEYS)})")
    patterns = [k for k in PATTERN_KEYS if k in item]
    if len(patterns) != 1:
        raise RulesError(f"{where}: give exactly one pattern of {', '.join(PATTERN_KEYS)}, got "
                         f"{', '.join(patterns) or 'none'}")
    kind, pattern = _pattern(patterns[0], item[patterns[0]], where)
    if not any(k in item for k in ACTION_KEYS):
        raise RulesError(f"{where}: give at least one action: {', '.join(ACTION_KEYS)}")
    description = item.get("description")
    if description is not None and not isinstance(description, str):
        raise RulesError(f"{where}: description: must be text, got {_kind(description)}")
    return Rule(
        rule_id, kind, pattern,
        pins=_pins(item["pin"], f"{where}: pin") if "pin" in item else (),
        boost=condition(item["boost"], f"{where}: boost") if "boost" in item else None,
        bury=condition(item["bury"], f"{where}: bury") if "bury" in item else None,
        hide=_hide(item["hide"], f"{where}: hide") if "hide" in item else (),
        description=description,
    )


def _pattern(key: str, value: Any, where: str) -> tuple[str, str]:
    if key == "any":
        if value is not True:
            raise RulesError(f"{where}: any: must be true (to match every query), got {_shown(value)}")
        return "any", ""
    if not isinstance(value, str) or not normalise_query(value) or len(value) > MAX_PATTERN_CHARS:
        raise RulesError(f"{where}: {key}: must be text of 1 to {MAX_PATTERN_CHARS} characters, got {_shown(value)}")
    pattern = normalise_query(value)
    if key == "contains" and len(pattern.split()) > MAX_CONTAINS_WORDS:
        raise RulesError(f"{where}: contains: {len(pattern.split())} words; give at most {MAX_CONTAINS_WORDS}")
    return ("exact" if key == "query" else "contains"), pattern


def _pins(value: Any, where: str) -> tuple[Pin, ...]:
    items = [value] if isinstance(value, Mapping) else value
    if not isinstance(items, list) or not items:
        raise RulesError(f"{where}: give a list of {{product, position}}, got {_shown(value)}")
    if len(items) > MAX_PINS:
        raise RulesError(f"{where}: {len(items)} pins; give at most {MAX_PINS}")
    pins, positions, products = [], set(), set()
    for number, pin in enumerate(items, start=1):
        at = f"{where} {number}"
        if not isinstance(pin, Mapping):
            raise RulesError(f"{at}: a pin is {{product, position}}, got {_kind(pin)}")
        unknown = [k for k in pin if k not in PIN_KEYS]
        if unknown:
            raise RulesError(f"{at}: unknown key {str(unknown[0])[:40]!r} (keys: product, position)")
        product = _product(pin.get("product"), f"{at}: product")
        position = pin.get("position")
        if isinstance(position, bool) or not isinstance(position, int) or not 1 <= position <= MAX_POSITION:
            raise RulesError(f"{at}: position: must be a whole number from 1 (the first hit) to {MAX_POSITION}, "
                             f"got {_shown(position)}")
        if position in positions:
            raise RulesError(f"{at}: position: {position} is taken by another pin of this rule")
        if product in products:
            raise RulesError(f"{at}: product: {product!r} is pinned twice by this rule")
        positions.add(position)
        products.add(product)
        pins.append(Pin(product, position))
    return tuple(pins)


def _hide(value: Any, where: str) -> tuple[str, ...]:
    items = [value] if isinstance(value, (str, int)) and not isinstance(value, bool) else value
    if not isinstance(items, list) or not items:
        raise RulesError(f"{where}: give a list of product ids, got {_shown(value)}")
    if len(items) > MAX_HIDDEN:
        raise RulesError(f"{where}: {len(items)} products; give at most {MAX_HIDDEN}")
    return tuple(dict.fromkeys(_product(p, f"{where} {n}") for n, p in enumerate(items, start=1)))


def _product(value: Any, where: str) -> str:
    if isinstance(value, bool) or not isinstance(value, (str, int)) or not str(value).strip() or len(str(value)) > 256:
        raise RulesError(f"{where}: must be a product id (text or a whole number), got {_shown(value)}")
    return str(value)


def condition(value: Any, where: str) -> dict[str, Any]:
    """A boost or bury condition as a `where` mapping: from "F=V" text, a list of such texts (as `--where`:
    every field must match, one given again matches any of its values; F>=X, F<=Y bound numbers), or a
    mapping {column: value | [values] | {"min": X, "max": Y}}."""
    try:
        if isinstance(value, str):
            return parse_where([value])
        if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
            return parse_where(value)
        if isinstance(value, Mapping) and value:
            return _where_mapping(value, where)
    except RulesError:
        raise
    except QueryError as exc:
        raise RulesError(f"{where}: {exc}") from None
    raise RulesError(f"{where}: give a condition as \"FIELD=VALUE\", a list of them, or {{FIELD: VALUE}}, "
                     f"got {_shown(value)}")


def _where_mapping(value: Mapping[str, Any], where: str) -> dict[str, Any]:
    if len(value) > MAX_CONDITIONS:
        raise RulesError(f"{where}: {len(value)} columns; give at most {MAX_CONDITIONS}")
    out: dict[str, Any] = {}
    for column, wanted in value.items():
        at = f"{where}: {str(column)[:60]}"
        if not isinstance(column, str) or not column:
            raise RulesError(f"{where}: {_shown(column)} is not a column name")
        if isinstance(wanted, Mapping):
            unknown = [k for k in wanted if k not in RANGE_KEYS]
            if unknown or not wanted:
                raise RulesError(f"{at}: a range is {{min, max}} (either may be left out), got {_shown(dict(wanted))}")
            ends = tuple(wanted.get(k) for k in RANGE_KEYS)
            for end in ends:
                if end is not None and (isinstance(end, bool) or not isinstance(end, Real) or not math.isfinite(end)):
                    raise RulesError(f"{at}: {_shown(end)} is not a finite number")
            if ends[0] is not None and ends[1] is not None and ends[0] > ends[1]:
                raise RulesError(f"{at}: the range starts above its end ({ends[0]} > {ends[1]})")
            out[column] = ends
        elif isinstance(wanted, list):
            if not wanted or len(wanted) > MAX_VALUES:
                raise RulesError(f"{at}: give 1 to {MAX_VALUES} values, got {len(wanted)}")
            out[column] = [_value(v, at) for v in wanted]
        else:
            out[column] = _value(wanted, at)
    return out


def _value(value: Any, where: str) -> Any:
    if isinstance(value, str) and value:
        return value
    if isinstance(value, bool) or (isinstance(value, Real) and math.isfinite(value)):
        return value
    raise RulesError(f"{where}: {_shown(value)} is not a value to compare (text, a finite number or true/false)")


def _where_json(where: Mapping[str, Any]) -> dict[str, Any]:
    """A `where` mapping in the file format: ranges as {"min", "max"} (an open end left out)."""
    out: dict[str, Any] = {}
    for column, wanted in where.items():
        if isinstance(wanted, tuple):
            out[column] = {k: v for k, v in zip(RANGE_KEYS, wanted) if v is not None}
        else:
            out[column] = list(wanted) if isinstance(wanted, list) else wanted
    return out


def _kind(value: Any) -> str:
    kinds = {dict: "an object", list: "a list", str: "text", type(None): "nothing"}
    return kinds.get(type(value), type(value).__name__)


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else f"{text[:57]}..."
