"""The CLI's front: the command list is a contract (names and order), each group's module owns its commands, and a
failed command is one `vitrina: ...` line worded in flags."""

from __future__ import annotations

import argparse
import re

import pytest

from vitrina.cli import build_parser
from vitrina.cli.common import run_reporting_errors
from vitrina.engine.errors import ArgumentError, QueryError
from vitrina.errors import Param
from tests.helpers import run_cli

COMMANDS = ["index", "reindex", "upsert", "delete", "rules", "synonyms", "search", "similar", "eval", "train-text",
            "train", "export-onnx", "events", "recommend", "serve", "info", "demo"]
GROUP_OF = {"index": "build", "reindex": "build", "upsert": "build", "delete": "build", "rules": "rules", "search": "query",
            "similar": "query", "info": "query", "eval": "evaluate", "train-text": "learn", "train": "learn",
            "export-onnx": "export", "events": "events", "recommend": "events", "serve": "serve", "demo": "demo",
            "synonyms": "synonyms"}


def subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def test_commands_are_listed_in_the_contract_order():
    assert list(subcommands(build_parser())) == COMMANDS
    code, out, _ = run_cli("--help")
    assert code == 0
    listed = [line.split()[0] for line in out.split("options:")[0].splitlines() if re.match(r"    \S", line)]
    assert listed == COMMANDS


@pytest.mark.parametrize("command", COMMANDS)
def test_each_command_is_handled_in_its_group_module(command):
    parser = subcommands(build_parser())[command]
    nested = subcommands(parser) if any(isinstance(a, argparse._SubParsersAction) for a in parser._actions) else {}
    for leaf in nested.values() or [parser]:
        assert leaf.get_default("func").__module__ == f"vitrina.cli.{GROUP_OF[command]}"


@pytest.mark.parametrize("command", ["search", "similar"])
def test_filter_flags_say_their_syntax(command):
    code, out, _ = run_cli(command, "--help")
    assert code == 0
    text = " ".join(out.split())
    for syntax in ("--where FIELD=VALUE", "FIELD>=X", "FIELD<=Y", "any of its values", "--price LOW:HIGH",
                   "either end may be empty"):
        assert syntax in text, syntax


def failing(exc: BaseException, command: str = "index") -> argparse.Namespace:
    """Parsed arguments of `command` whose handler raises `exc`."""
    def handler(_: argparse.Namespace) -> int:
        raise exc
    return argparse.Namespace(command=command, func=handler)


@pytest.mark.parametrize("exc, code, line", [
    (QueryError("{mode} needs a lexical index", mode=Param("mode", "hybrid")), 1,
     "vitrina: error: --mode hybrid needs a lexical index"),
    (ArgumentError("{text_fields} must name columns", text_fields=Param("text_fields")), 1,
     "vitrina: error: --text-fields must name columns"),
    (QueryError("a {plain} message"), 1, "vitrina: error: a {plain} message"),
    (OSError(28, "No space left on device", "/idx/vectors.faiss"), 1,
     "vitrina: error: vitrina index could not read or write its files: No space left on device (/idx/vectors.faiss); "
     "what was indexed before is unchanged"),
    (KeyboardInterrupt(), 130, "vitrina: interrupted; nothing was changed"),
])
def test_a_failed_command_is_one_line_in_the_cli_terms(capsys, exc, code, line):
    assert run_reporting_errors(failing(exc)) == code
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == line + "\n"


def test_other_errors_are_not_swallowed():
    with pytest.raises(ZeroDivisionError):
        run_reporting_errors(failing(ZeroDivisionError("a bug")))
