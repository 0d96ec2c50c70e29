"""Merchandising rules: pin, boost, bury and hide products for query patterns (see README "Merchandising rules").

model (the file format, read and checked: RuleSet, RulesError), matching (which rules a query fires),
apply (rules bound to an index and applied to a query's hits), stored (rules kept with an index version).
"""

from vitrina.engine.query.rules.apply import MerchandisingRules, rules_depth, without_hidden
from vitrina.engine.query.rules.model import Rule, RuleSet, RulesError, parse_rules, read_rules_file

__all__ = ["MerchandisingRules", "Rule", "RuleSet", "RulesError", "parse_rules", "read_rules_file", "rules_depth",
           "without_hidden"]
