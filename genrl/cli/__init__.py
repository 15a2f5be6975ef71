"""The `genrl` command line. Each subcommand lives in its own module under genrl/cli/ and defines
`add_arguments(parser)` and `run(args) -> int`; register it in COMMANDS below."""

from __future__ import annotations

import argparse
import importlib
import os
import sys

import genrl

# name -> (module, one-line help). Modules are imported lazily so `genrl --help` stays fast.
COMMANDS: dict[str, tuple[str, str]] = {
    "train": ("genrl.cli.train", "RL fine-tune a model from a YAML config (no arguments: the CPU demo)"),
    "pretrain": ("genrl.cli.pretrain", "pretrain the shapes-world base model by flow matching"),
    "sample": ("genrl.cli.sample", "generate images (optionally with a LoRA and RL Guidance) into a PNG grid"),
    "eval": ("genrl.cli.eval", "score a model on a prompt split with a reward; per-category results"),
    "score": ("genrl.cli.score", "score a folder of images with one or more rewards"),
    "export": ("genrl.cli.export", "export a run's LoRA (diffusers format) or a merged pipeline"),
    "rlg-sweep": ("genrl.cli.rlg_sweep", "reward against RL-Guidance scale: a table and a plot"),
    "data": ("genrl.cli.data", "write the GenEval / OCR prompt sets the shipped recipes read"),
    "classifier": ("genrl.cli.classifier", "train a calibrated image classifier on labelled images (CTRL's reward)"),
}


class _Help(argparse.HelpFormatter):
    """Shows an option's default unless it is None / a flag or the help text already says it."""

    def _get_help_string(self, action):
        h = action.help or ""
        d = action.default
        if "default" in h or d is None or d is argparse.SUPPRESS or isinstance(d, bool) or not action.option_strings:
            return h
        return f"{h} (default: %(default)s)"


def write_report(path: str | None, report: dict) -> None:
    """Write a command's JSON report to `path` (parent folders created) and say so; nothing when path is None."""
    if not path:
        return
    import json

    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as f:
        json.dump(report, f, indent=2)
    print(f"wrote {path}")


class UserError(Exception):
    """A problem with the user's input; printed as one line without a traceback."""


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="genrl", description="RL fine-tuning of diffusion and flow models.")
    p.add_argument("--version", action="version", version=f"genrl {genrl.__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module, help_) in COMMANDS.items():
        sp = sub.add_parser(name, help=help_, description=help_, formatter_class=_Help)
        sp.set_defaults(_module=module)
        sp._genrl_module = module  # noqa: SLF001 - arguments are added on demand
    return p


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = _parser()
    # add the chosen subcommand's arguments (imports only that module)
    if argv and argv[0] in COMMANDS:
        sub = parser._subparsers._group_actions[0].choices[argv[0]]  # noqa: SLF001
        importlib.import_module(COMMANDS[argv[0]][0]).add_arguments(sub)
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    mod = importlib.import_module(args._module)
    try:
        return int(mod.run(args) or 0)
    except KeyboardInterrupt:
        print(f"\ngenrl {args.command}: interrupted", file=sys.stderr)
        return 130
    except (UserError, FileNotFoundError, ValueError, KeyError) as e:
        if os.environ.get("GENRL_DEBUG"):
            raise
        msg = e.args[0] if isinstance(e, KeyError) and e.args else e
        print(f"genrl {args.command}: error: {msg}", file=sys.stderr)
        return 2
