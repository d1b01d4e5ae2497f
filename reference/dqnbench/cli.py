"""`dqnbench` command line. `train`'s options are generated from `DQNConfig`, one per field."""

from __future__ import annotations

import argparse
import dataclasses
import signal
import sys
import types
import typing
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from dqnbench.allocator import pin_glibc_allocator
from dqnbench.config import NAMED_CONFIGS, DQNConfig, config_from_dict, field_docs, load_config

Command = Callable[[argparse.Namespace], int]


def _parse_optional(inner: Callable[[str], Any]) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        return None if text.lower() == "none" else inner(text)

    parse.__name__ = getattr(inner, "__name__", "value")
    return parse


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    """One option per DQNConfig field, typed from its annotation, helped by its docstring."""
    hints = typing.get_type_hints(DQNConfig)
    docs = field_docs()
    for f in dataclasses.fields(DQNConfig):
        hint = hints[f.name]
        option = "--" + f.name.replace("_", "-")
        default_text = f"(default: {f.default})"
        help_text = f"{docs.get(f.name, '')} {default_text}".replace("%", "%%")
        args = typing.get_args(hint)
        optional = typing.get_origin(hint) in (typing.Union, types.UnionType) and type(None) in args
        base = next(a for a in args if a is not type(None)) if optional else hint
        if base is bool:
            parser.add_argument(option, action=argparse.BooleanOptionalAction, default=None, help=help_text)
        elif typing.get_origin(base) is typing.Literal:
            parser.add_argument(option, choices=typing.get_args(base), default=None, help=help_text)
        else:
            convert = base if base in (int, float, str, Path) else str
            parser.add_argument(
                option,
                type=_parse_optional(convert) if optional else convert,
                default=None,
                metavar=f.name.upper(),
                help=help_text,
            )


def config_from_args(args: argparse.Namespace) -> DQNConfig:
    base = load_config(args.config)
    given = {f.name: getattr(args, f.name) for f in dataclasses.fields(DQNConfig) if getattr(args, f.name) is not None}
    return config_from_dict(given, origin="command line", base=base)


def _interrupt_on_sigterm(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _train(args: argparse.Namespace) -> int:
    from dqnbench.train import train

    config = config_from_args(args)
    # `kill PID` (a job scheduler's stop) then ends a run as Ctrl-C does: every result file complete.
    previous = signal.signal(signal.SIGTERM, _interrupt_on_sigterm)
    try:
        result = train(config)
    finally:
        signal.signal(signal.SIGTERM, previous)
    state = "interrupted after" if result.interrupted else "finished"
    print(
        f"{state} {len(result.durations)} episodes, {result.total_steps} steps in {result.wall_s:.1f} s; "
        f"last-100 mean duration {result.mean_last_100:.1f}; results in {result.out}"
    )
    return 130 if result.interrupted else 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dqnbench", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    train = commands.add_parser("train", help="train the pixel CartPole DQN", description="Train a DQN.")
    train.add_argument(
        "--config",
        default="seed",
        help=f"a named configuration ({', '.join(NAMED_CONFIGS)}) or a JSON file of DQNConfig fields; options "
        "given on the command line override it (default: seed)",
    )
    add_config_arguments(train)
    train.set_defaults(run=_train)

    for register in _extra_commands():
        register(commands)
    return parser


def _extra_commands() -> list[Callable[[Any], None]]:
    """Sub-commands that live beside the features they drive (each module exposes `register(subparsers)`)."""
    import importlib

    registers = []
    modules = (
        "dqnbench.sweep",
        "dqnbench.evaluate",
        "dqnbench.bench.cli",
        "dqnbench.report.cli",
        "dqnbench.conformance.cli",
        "dqnbench.conformance.golden",
    )
    for module in modules:
        try:
            registers.append(importlib.import_module(module).register)
        except ModuleNotFoundError as error:
            if error.name is None or not module.startswith(error.name):
                raise
    return registers


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    # Training allocates and frees multi-MB batches every step; letting glibc unmap them cost a run 5-13% here.
    pin_glibc_allocator()
    try:
        return int(args.run(args))
    except (ValueError, FileExistsError, FileNotFoundError, RuntimeError, MemoryError) as error:
        print(f"dqnbench {args.command}: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
