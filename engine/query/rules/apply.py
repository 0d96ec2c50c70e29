"""Merchandising rules bound to one index, and applied to a query's ranked hits.

For a query, the fired rules (file order) act on its relevance ranking, before paging:
  1. hide: hidden products leave the hits (and the matched set that facets count and price sorts order);
  2. boost / bury: a stable re-ordering of the best RULES_DEPTH hits (or offset + k, when deeper): products
     meeting more boost conditions than bury conditions first, then the rest, then those meeting more bury
     conditions; relevance order within each group; scores stay the retrieval's;
  3. pin: each pinned product is put at its position (1 = first; positions past the end append it),
     whether or not retrieval found it, as long as the filters allow it and no fired rule hides it.
     Where two pins want one position, the first rule in the file takes it and the other follows. A
     pinned product keeps its score when retrieved, else takes the score of the hit it displaces.
Pages agree with one another within RULES_DEPTH. Price sorts apply hide only (pins, boosts and buries
order by relevance, which a price sort replaces), and then report only the rules that hide.
"""

from __future__ import annotations

import json
import logging
from collections import OrderedDict
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Mapping

import numpy as np

from vitrina.engine.errors import QueryError
from vitrina.engine.query.hits import MAX_K, SearchHit
from vitrina.engine.query.rules.matching import PatternIndex
from vitrina.engine.query.rules.model import Rule, RuleSet, RulesError

if TYPE_CHECKING:
    from vitrina.engine.query.search import SearchSession

RULES_DEPTH = 100  # hits re-ordered by boost and bury (at least; offset + k when deeper)
MASK_CACHE = 256  # condition masks kept (a boolean per product each)
SHOWN_PROBLEMS = 10  # misfits named in one error (then how many more)
log = logging.getLogger("vitrina")


class MerchandisingRules:
    """A RuleSet over one index's catalog: `fired` gives a query's rules, `apply` re-ranks its hits.

    strict: every pinned or hidden product must be in the catalog and every condition's column and text
    values must exist (one RulesError names each misfit's rule and field, the first SHOWN_PROBLEMS); else
    (rules stored with an index whose catalog changed since) such pins, hides and conditions are left out
    with a warning.
    """

    def __init__(self, rules: RuleSet, session: SearchSession, strict: bool = True) -> None:
        self.session = session
        self._masks: OrderedDict[str, np.ndarray] = OrderedDict()  # condition_key -> its products (a boolean per row)
        self._problems: dict[str, str | None] = {}
        self._misfits: list[str] = []  # what does not fit the catalog, in strict mode
        self.rules = RuleSet(tuple(self._checked(rule, number, rules.source, strict)
                                   for number, rule in enumerate(rules.rules, start=1)), rules.source)
        if self._misfits:
            more = len(self._misfits) - SHOWN_PROBLEMS
            raise RulesError("; ".join(self._misfits[:SHOWN_PROBLEMS]) + (f"; and {more} more" if more > 0 else ""))
        self.patterns = PatternIndex(self.rules)

    def _checked(self, rule: Rule, number: int, source: str, strict: bool) -> Rule:
        where = f"{source}: rule {number} (id {rule.id!r})"
        products = self.session.products
        kept = lambda found, problem: self._kept(found, problem, strict)  # noqa: E731
        missing = f"{where}: {{}}: product {{!r}} is not in the index"
        pins = tuple(p for p in rule.pins if kept(p.product in products, missing.format("pin", p.product)))
        hide = tuple(p for p in rule.hide if kept(p in products, missing.format("hide", p)))
        conditions = {}
        for name in ("boost", "bury"):
            wanted = getattr(rule, name)
            problem = None if wanted is None else self._condition_problem(wanted)
            if problem is not None:
                kept(False, f"{where}: {name}: {problem}")
                wanted = None
            conditions[name] = wanted
        return replace(rule, pins=pins, hide=hide, **conditions)

    def _kept(self, found: bool, problem: str, strict: bool) -> bool:
        """Whether a rule's part stays: found; else noted as a misfit (strict) or left out with a warning."""
        if found:
            return True
        if strict:
            self._misfits.append(problem)
        else:
            log.warning("merchandising rule part left out: %s", problem)
        return False

    def _condition_problem(self, where: Mapping[str, Any]) -> str | None:
        """Why the catalog cannot answer a condition (an unknown column or value), or None; each distinct
        condition is checked once."""
        key = condition_key(where)
        if key not in self._problems:
            self._problems[key] = self._first_problem(where)
        return self._problems[key]

    def _first_problem(self, where: Mapping[str, Any]) -> str | None:
        filters = self.session.filters
        for column, wanted in where.items():
            if column not in filters.available:
                return (f"this catalog has no column {column[:60]!r} (columns: {', '.join(filters.available)})")
            try:  # one column at a time: a text value is checked against the column's values, a range needs numbers
                self.session.allowed_rows(where={column: wanted})
            except QueryError as exc:
                return str(exc)
        return None

    def fired(self, query: str, corrected: str | None = None) -> list[Rule]:
        """The rules the query fires, as typed or as corrected for typos, in file order."""
        return self.patterns.matching(query, corrected)

    def mask(self, where: Mapping[str, Any]) -> np.ndarray:
        """The products meeting a boost or bury condition (a boolean per row), kept for reuse (MASK_CACHE)."""
        key = condition_key(where)
        found = self._masks.get(key)
        if found is None:
            found = self.session.allowed_rows(where=where)
            self._masks[key] = found
            if len(self._masks) > MASK_CACHE:
                self._masks.popitem(last=False)
        else:
            self._masks.move_to_end(key)
        return found

    def apply(self, hits: list[SearchHit], fired: list[Rule], allowed: np.ndarray | None) -> list[SearchHit]:
        """A query's hits (relevance order) with its fired rules applied: hidden, boosted or buried, pinned."""
        if not fired:
            return hits
        hidden = hidden_ids(fired)
        hits = [h for h in hits if h.id not in hidden]
        hits = self._boosted(hits, fired)
        return self._pinned(hits, fired, hidden, allowed)

    def _boosted(self, hits: list[SearchHit], fired: list[Rule]) -> list[SearchHit]:
        acting = [(r, a) for r in fired for a in ("boost", "bury") if getattr(r, a) is not None]
        if not acting or not hits:
            return hits
        rows = np.array([self.session.products.row_of(h.id) for h in hits], dtype=np.int64)
        key = np.zeros(len(hits), dtype=np.int64)
        for rule, action in acting:
            met = self.mask(getattr(rule, action))[rows]
            key += np.where(met, -1 if action == "boost" else 1, 0)
        return [hits[i] for i in np.argsort(key, kind="stable")]

    def _pinned(self, hits: list[SearchHit], fired: list[Rule], hidden: set[str],
                allowed: np.ndarray | None) -> list[SearchHit]:
        products = self.session.products
        pins: dict[str, int] = {}
        for rule in fired:
            for pin in rule.pins:
                if pin.product in pins or pin.product in hidden or pin.product not in products:
                    continue
                if allowed is not None and not allowed[products.row_of(pin.product)]:
                    continue  # the filters leave it out: pins respect them
                pins[pin.product] = pin.position
        if not pins:
            return hits
        found = {h.id: h for h in hits if h.id in pins}
        hits = [h for h in hits if h.id not in pins]
        for product, position in sorted(pins.items(), key=lambda item: item[1]):  # stable: ties in file order
            at = min(position - 1, len(hits))
            hit = found.get(product)
            if hit is None:
                score = hits[at].score if at < len(hits) else (hits[-1].score if hits else 0.0)
                hit = self.session.hits(np.array([score]), np.array([products.row_of(product)]))[0]
            hits.insert(at, hit)
        return hits


def condition_key(where: Mapping[str, Any]) -> str:
    """One text per distinct condition (its columns in order, values as given)."""
    return json.dumps(sorted((column, repr(wanted)) for column, wanted in where.items()))


def hidden_ids(fired: list[Rule]) -> set[str]:
    return {product for rule in fired for product in rule.hide}


def rules_depth(end: int, fired: list[Rule]) -> int:
    """How deep to retrieve for hits up to `end` once the fired rules act: deeper by the hidden products,
    and at least RULES_DEPTH when a rule boosts or buries (so pages agree); at most MAX_K."""
    if not fired:
        return end
    depth = max(end, RULES_DEPTH) if any(r.boost is not None or r.bury is not None for r in fired) else end
    return min(MAX_K, depth + len(hidden_ids(fired)))


def without_hidden(session: SearchSession, scores: np.ndarray, rows: np.ndarray,
                   fired: list[Rule]) -> tuple[np.ndarray, np.ndarray]:
    """A matched set (scores, rows) without the products the fired rules hide."""
    hidden = hidden_ids(fired)
    if not hidden:
        return scores, rows
    by_id = session.products.rows_by_id
    gone = np.array([by_id[p] for p in hidden if p in by_id], dtype=np.int64)
    keep = ~np.isin(rows, gone)
    return scores[keep], rows[keep]


def fired_rules(session: SearchSession, search: Any) -> list[list[Rule]]:
    """The rules each query of a planned text search fires (engine.query.compose.TextSearch), [] each when the
    index has none; a price sort keeps only the rules that hide (the only action it applies)."""
    rules = session.rules
    if rules is None:
        return [[] for _ in search.queries]
    fired = [rules.fired(query, session.corrected_query(query, search.mode)) for query in search.queries]
    return [[r for r in f if r.hide] for f in fired] if search.by_price else fired


def merchandise(session: SearchSession, hits: list[SearchHit], fired: list[Rule],
                allowed: np.ndarray | None) -> list[SearchHit]:
    """One query's hits with its fired rules applied (`MerchandisingRules.apply`); as they are when none fired."""
    return session.rules.apply(hits, fired, allowed) if fired else hits
