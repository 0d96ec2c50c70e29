"""Merchandising rules kept with an index version: the settings file `settings/rules.json` (engine.build.settings).

Rules change by publishing a new version of the index (`set_index_rules`, `vitrina rules`, `Index.set_rules`),
so every version answers with the rules it was published with and `POST /admin/reload` picks up new ones.
They are checked strictly (every product, column and value must exist) before they are stored; a version
read later keeps working when a product or column has gone since (that part of a rule is left out, with a
warning).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

from vitrina.engine.query.rules.apply import MerchandisingRules
from vitrina.engine.query.rules.model import RuleSet, RulesError, parse_rules, read_rules_file

if TYPE_CHECKING:
    from vitrina.engine.config import VitrinaConfig
    from vitrina.engine.query.search import SearchSession

RULES_SETTING = "rules.json"


def rules_from(source: Any) -> RuleSet:
    """A RuleSet from a rules file path (.json, .yaml, .yml), the file's data as a dict, or a RuleSet."""
    if isinstance(source, RuleSet):
        return source
    if isinstance(source, (str, os.PathLike)):
        return read_rules_file(source)
    if isinstance(source, Mapping):
        return parse_rules(source, "rules")
    raise RulesError(f"rules must be a rules file's path, its data as a dict, or None; got {type(source).__name__}")


def rules_setting(rules: RuleSet) -> bytes:
    """The settings file's bytes: the rules in the JSON file format."""
    return (json.dumps(rules.to_json(), ensure_ascii=False, indent=1) + "\n").encode("utf-8")


def check_rules(session: SearchSession, rules: RuleSet) -> MerchandisingRules:
    """The rules bound to an index, every pinned or hidden product, column and value checked (RulesError)."""
    return MerchandisingRules(rules, session, strict=True)


def load_index_rules(session: SearchSession) -> MerchandisingRules | None:
    """The rules stored with the session's index version, or None; parts that no longer fit its catalog are
    left out with a warning, and a damaged file is a RulesError naming it."""
    data = session.directory.settings.get(RULES_SETTING)
    if data is None:
        return None
    source = str(Path(session.path) / "settings" / RULES_SETTING)
    try:
        parsed = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RulesError(f"{source}: not valid JSON: {exc}") from None
    return MerchandisingRules(parse_rules(parsed, source), session, strict=False)


def set_index_rules(root: str | os.PathLike[str], rules: RuleSet | None, config: VitrinaConfig | None = None,
                    keep: int = 3) -> Path:
    """Publish a new version of the index at `root` with these rules (None: without rules); returns the version's
    directory. A plain index directory becomes a versioned root first (engine.build.settings.publish_setting)."""
    from vitrina.engine.build.settings import publish_setting

    return publish_setting(root, RULES_SETTING, None if rules is None else rules_setting(rules), config, keep)
