"""The top-level commands load when they run: `custody --help` lists them from a table in custody/cli/main.py
without importing them. These tests keep that table equal to the commands themselves, and keep the modules a
command does not need (gRPC, eth-account, cryptography, the generated stubs) out of `custody --help`."""

from __future__ import annotations

import importlib
import pkgutil

import click
from click.testing import CliRunner

import custody.cli
from custody.cli.main import COMMANDS, cli
from tests.cli_children import run_and_list_modules

# What a command that neither calls the daemon nor signs anything has no use for.
HEAVY_MODULES = (
    "grpc",
    "eth_account",
    "eth_abi",
    "eth_utils",
    "cryptography",
    "custody.api._gen.custody_pb2",
)


def top_level_commands() -> dict[str, click.Command]:
    """Every click command defined in custody.cli that is not a subcommand of one of its groups."""
    commands: dict[int, click.Command] = {}
    for module_info in pkgutil.iter_modules(custody.cli.__path__, "custody.cli."):
        module = importlib.import_module(module_info.name)
        for value in vars(module).values():
            if isinstance(value, click.Command) and value is not cli:
                commands[id(value)] = value
    nested = {
        id(subcommand)
        for command in commands.values()
        if isinstance(command, click.Group)
        for subcommand in command.commands.values()
    }
    return {command.name or "": command for key, command in commands.items() if key not in nested}


def test_the_help_table_names_every_command_with_its_own_one_line_help() -> None:
    commands = top_level_commands()
    assert sorted(COMMANDS) == sorted(commands)
    for name, entry in COMMANDS.items():
        command = getattr(importlib.import_module(entry.module), entry.attribute)
        assert command is commands[name]
        assert entry.short_help == command.get_short_help_str(limit=1000)


def test_help_lists_every_command_and_its_help() -> None:
    result = CliRunner().invoke(cli, ["--help"], terminal_width=200)
    assert result.exit_code == 0
    listed = result.output.split("Commands:")[1].split("Exit codes:")[0]
    for name, entry in COMMANDS.items():
        assert f"  {name}  " in listed
        assert entry.short_help in listed


def test_an_unknown_command_is_a_usage_error_naming_it() -> None:
    result = CliRunner().invoke(cli, ["sing", "tx"])
    assert result.exit_code == 2
    assert "No such command 'sing'" in result.output


def imported_modules_after(arguments: list[str]) -> set[str]:
    """The modules a fresh interpreter holds after running `custody ARGUMENTS`, which must succeed."""
    code, printed, modules = run_and_list_modules(arguments)
    assert code == 0, printed
    return modules


def test_help_imports_neither_grpc_nor_eth_account_nor_cryptography() -> None:
    modules = imported_modules_after(["--help"])
    assert [name for name in HEAVY_MODULES if name in modules] == []
    # Not one command module either: the table stands in for them.
    assert {entry.module for entry in COMMANDS.values()} & modules == set()


def test_a_command_group_help_imports_only_its_own_module() -> None:
    modules = imported_modules_after(["dev", "--help"])
    assert "custody.cli.dev" in modules
    assert [
        name
        for name in ("grpc", "eth_account", "eth_utils", "custody.cli.sign", "custody.cli.approve")
        if name in modules
    ] == []


def leaf_commands(group: click.Group, path: tuple[str, ...] = ()) -> dict[tuple[str, ...], click.Command]:
    context = click.Context(group)
    leaves: dict[tuple[str, ...], click.Command] = {}
    for name in group.list_commands(context):
        command = group.get_command(context, name)
        assert command is not None
        if isinstance(command, click.Group):
            leaves |= leaf_commands(command, (*path, name))
        else:
            leaves[(*path, name)] = command
    return leaves


# The commands that do not call the daemon, and the shared options that do something for each.
LOCAL_COMMANDS = {
    ("serve",): set(),
    ("audit", "retire-token-state"): set(),
    ("dev", "init"): {"--json"},
    ("dev", "add-identity"): {"--json"},
    ("approver-key", "create"): {"--profile", "--json"},
    ("approver-key", "show"): {"--profile", "--json"},
}


def test_each_command_lists_only_the_shared_options_that_do_something_for_it() -> None:
    shared = {"--profile", "--server", "--json"}
    leaves = leaf_commands(cli)
    assert set(LOCAL_COMMANDS) <= set(leaves)
    for path, command in leaves.items():
        declared = {option for parameter in command.params for option in parameter.opts} & shared
        expected = LOCAL_COMMANDS.get(path, shared)
        assert declared == expected, " ".join(path)
