"""The command-line contract's reusable pieces: option validators, the user-error type, and
the help formatter every ``jaxembed`` command uses (docs/cli.md states the contract).

* Validators are argparse ``type=`` functions. Each returns the converted value or raises
  :class:`argparse.ArgumentTypeError` with a message that names the bad value, so that
  argparse reports ``argument --dim: must be an integer >= 1, got '0'``. They only look at
  the value (and, for paths, the file system): nothing heavy is imported here.
* :class:`UsageError` is what a command raises for a check argparse cannot express (two
  options that contradict each other, a folder without a checkpoint to resume). ``cli.main``
  turns it into exit status 2 and one line ``jaxembed <command>: <message>``.
* :class:`HelpFormatter` shows every option's default, keeps the text plain (reST markup
  such as double back-quotes or ``:func:`` roles is stripped) and keeps the paragraphs of a
  description.
* :class:`Parser` is an ``ArgumentParser`` whose errors raise :class:`UsageError` instead of
  printing the usage block and exiting, so ``cli.main`` prints them as one line.

A command adds its options with these validators and, for checks that need several options
at once, sets ``check=`` with ``set_defaults``: ``cli.main`` runs ``args.check(args)`` after
parsing and before ``args.handler(args)``, so every check runs before any work starts.
"""

from __future__ import annotations

import argparse
import math
import os
import re
import textwrap
from collections.abc import Callable
from pathlib import Path

__all__ = [
    "HelpFormatter",
    "Parser",
    "UsageError",
    "batch_size",
    "distinct_paths",
    "existing_dir",
    "existing_file",
    "float_in",
    "given",
    "int_at_least",
    "mesh_shape",
    "nonempty_text",
    "nonneg_float",
    "nonneg_int",
    "output_dir",
    "output_file",
    "plain",
    "positive_float",
    "positive_int",
    "probability",
    "text_file",
    "unit_interval",
]


class UsageError(ValueError):
    """A user error found before work starts: ``cli.main`` exits with status 2 and prints
    ``jaxembed <command>: <message>`` (the message should name the option and the value)."""

    def __init__(self, message: str, prog: str | None = None) -> None:
        super().__init__(message)
        self.prog = prog


# ---------------------------------------------------------------------------- numbers
def _number(text: str, kind: Callable[[str], float], what: str) -> float:
    try:
        value = kind(str(text).strip())
    except (TypeError, ValueError):
        raise argparse.ArgumentTypeError(f"must be {what}, got {text!r}") from None
    if isinstance(value, float) and not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be {what}, got {text!r}")
    return value


def int_at_least(lowest: int, highest: int | None = None) -> Callable[[str], int]:
    """A validator for an integer in ``[lowest, highest]`` (no upper bound by default)."""
    what = (f"an integer >= {lowest}" if highest is None
            else f"an integer from {lowest} to {highest}")

    def check(text: str) -> int:
        value = _number(text, int, what)
        if value < lowest or (highest is not None and value > highest):
            raise argparse.ArgumentTypeError(f"must be {what}, got {text!r}")
        return int(value)

    check.__name__ = f"int_at_least_{lowest}"
    return check


positive_int = int_at_least(1)
positive_int.__doc__ = "An integer >= 1."
nonneg_int = int_at_least(0)
nonneg_int.__doc__ = "An integer >= 0."


def batch_size(text: str) -> int | str:
    """A batch size: an integer >= 1, or ``auto`` (``jaxembed.train.field_trainer.
    auto_batch_size`` of the training rows)."""
    if str(text).strip() == "auto":
        return "auto"
    try:
        return positive_int(text)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(f"must be an integer >= 1 or 'auto', got {text!r}"
                                         ) from None


def float_in(low: float = -math.inf, high: float = math.inf, *, low_open: bool = False,
             high_open: bool = False) -> Callable[[str], float]:
    """A validator for a finite float in the interval from ``low`` to ``high``; an open end
    excludes the bound itself (``float_in(0, 1, low_open=True)`` is ``(0, 1]``)."""
    left = "(" if low_open else "["
    right = ")" if high_open else "]"
    if math.isinf(low) and math.isinf(high):
        what = "a finite number"
    elif math.isinf(high):
        what = f"a number {'>' if low_open else '>='} {low:g}"
    elif math.isinf(low):
        what = f"a number {'<' if high_open else '<='} {high:g}"
    else:
        what = f"a number in {left}{low:g}, {high:g}{right}"

    def check(text: str) -> float:
        value = float(_number(text, float, what))
        if value < low or value > high or (low_open and value == low) or (
                high_open and value == high):
            raise argparse.ArgumentTypeError(f"must be {what}, got {text!r}")
        return value

    check.__name__ = "float_in"
    return check


positive_float = float_in(0.0, low_open=True)
positive_float.__doc__ = "A finite float > 0."
nonneg_float = float_in(0.0)
nonneg_float.__doc__ = "A finite float >= 0."
unit_interval = float_in(0.0, 1.0)
unit_interval.__doc__ = "A float in [0, 1] (a share, a rate that may be zero)."
probability = float_in(0.0, 1.0, low_open=True)
probability.__doc__ = "A float in (0, 1] (a keep probability: zero would keep nothing)."


def mesh_shape(text: str) -> str:
    """A device-mesh shape, ``'8'`` or ``'2x4'``: one or two integers >= 1. Returns it
    normalised (``'2x4'``)."""
    parts = str(text).strip().lower().split("x")
    try:
        sizes = [int(part) for part in parts]
    except ValueError:
        sizes = []
    if not 1 <= len(sizes) <= 2 or any(size < 1 for size in sizes):
        raise argparse.ArgumentTypeError(
            f"must be a mesh shape like '8' or '2x4' (sizes >= 1), got {text!r}")
    return "x".join(str(size) for size in sizes)


def nonempty_text(text: str) -> str:
    """Text with at least one non-blank character."""
    if not str(text).strip():
        raise argparse.ArgumentTypeError(f"must not be empty, got {text!r}")
    return str(text)


# ---------------------------------------------------------------------------- paths
def existing_file(text: str) -> str:
    """A path to a readable, non-empty regular file (not a folder)."""
    path = Path(text)
    if not str(text):
        raise argparse.ArgumentTypeError("needs a file name, got ''")
    if not path.exists():
        raise argparse.ArgumentTypeError(f"no such file: {text!r}")
    if path.is_dir():
        raise argparse.ArgumentTypeError(f"is a folder, not a file: {text!r}")
    if not os.access(path, os.R_OK):
        raise argparse.ArgumentTypeError(f"not readable (permission denied): {text!r}")
    if path.stat().st_size == 0:
        raise argparse.ArgumentTypeError(f"is empty: {text!r}")
    return str(text)


SNIFF_BYTES = 1 << 16
"""How much of a text file the validators read to judge it (64 KiB)."""


def text_file(text: str) -> str:
    """An :func:`existing_file` whose first 64 KiB are UTF-8 text (no NUL bytes): a binary
    or wrongly encoded file is refused before any work, naming the byte offset."""
    existing_file(text)
    with open(text, "rb") as handle:
        head = handle.read(SNIFF_BYTES)
    nul = head.find(b"\0")
    if nul >= 0:
        raise argparse.ArgumentTypeError(
            f"is not a text file (NUL byte at offset {nul}): {text!r}")
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as err:
        if not (len(head) == SNIFF_BYTES and err.start >= len(head) - 3):  # cut mid-character
            raise argparse.ArgumentTypeError(
                f"is not UTF-8 text (byte {head[err.start]:#04x} at offset {err.start}): "
                f"{text!r}") from None
    return str(text)


def existing_dir(text: str) -> str:
    """A path to an existing, readable folder."""
    path = Path(text)
    if not str(text):
        raise argparse.ArgumentTypeError("needs a folder name, got ''")
    if not path.exists():
        raise argparse.ArgumentTypeError(f"no such folder: {text!r}")
    if not path.is_dir():
        raise argparse.ArgumentTypeError(f"is a file, not a folder: {text!r}")
    if not os.access(path, os.R_OK | os.X_OK):
        raise argparse.ArgumentTypeError(f"not readable (permission denied): {text!r}")
    return str(text)


def _creatable(path: Path, text: str) -> None:
    """Raise unless ``path`` exists as a writable folder or its nearest existing ancestor is
    a writable folder (so that ``mkdir -p`` would succeed)."""
    probe = path
    while not probe.exists():
        if probe.parent == probe:
            break
        probe = probe.parent
    if not probe.is_dir():
        raise argparse.ArgumentTypeError(f"{str(probe)!r} is a file, so {text!r} cannot be "
                                         "created under it")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise argparse.ArgumentTypeError(f"cannot write in {str(probe)!r} (permission "
                                         f"denied), needed for {text!r}")


def output_dir(text: str) -> str:
    """A folder to write into: an existing writable folder, or one that can be created."""
    if not str(text):
        raise argparse.ArgumentTypeError("needs a folder name, got ''")
    path = Path(text)
    if path.exists() and not path.is_dir():
        raise argparse.ArgumentTypeError(f"is a file, not a folder: {text!r}")
    _creatable(path, text)
    return str(text)


def output_file(text: str) -> str:
    """A file to write: not a folder, in a folder that exists or can be created, writable.
    An existing file is replaced atomically only once the work is done."""
    if not str(text):
        raise argparse.ArgumentTypeError("needs a file name, got ''")
    path = Path(text)
    if path.is_dir() or str(text).endswith(("/", os.sep)):
        raise argparse.ArgumentTypeError(f"is a folder, not a file name: {text!r}")
    _creatable(path.parent if str(path.parent) else Path("."), text)
    return str(text)


def distinct_paths(**paths: str | None) -> None:
    """Raise :class:`UsageError` when two of the named paths (``option=path``; None is
    skipped) are the same file, e.g. an output that would overwrite an input."""
    seen: dict[str, str] = {}
    for option, path in paths.items():
        if path is None:
            continue
        key = os.path.realpath(path)
        if key in seen:
            first = seen[key]
            raise UsageError(f"{first} and {option} are the same file ({path!r}); "
                             f"writing {option} would overwrite {first}")
        seen[key] = option


# ---------------------------------------------------------------------------- parser, help
_ROLE = re.compile(r":[a-z]+:`~?([^`]+)`")
_LITERAL = re.compile(r"``([^`]+)``")


def given(args: argparse.Namespace) -> set[str]:
    """The ``dest`` names of the options spelled out on the command line (not left at their
    defaults), as recorded by :class:`Parser`; empty for a namespace built otherwise."""
    return set(getattr(args, "_given", set()))


def plain(text: str) -> str:
    """``text`` without reST markup: ``:func:`~a.b``` becomes ``b``, double back-quotes
    become single quotes, ``::`` ends a sentence with ``:``."""
    text = _ROLE.sub(lambda m: m.group(1).rsplit(".", 1)[-1], text)
    text = _LITERAL.sub(lambda m: f"'{m.group(1)}'", text)
    return text.replace("::", ":")


class HelpFormatter(argparse.HelpFormatter):
    """Plain-text help: each option shows its default (unless its help already says
    ``default``; a flag's is ``off``, an unset option's ``none``), reST markup is stripped,
    and descriptions are wrapped paragraph by paragraph (a blank line separates paragraphs;
    an indented line or a paragraph starting with ``try:`` is kept as it is, so that a
    command can be copied)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if "%(default)" in text or "default" in text.lower() or not action.option_strings:
            return text
        if action.default == argparse.SUPPRESS or (
                action.nargs == 0 and not isinstance(action, argparse._StoreTrueAction)):
            return text  # --help, --version
        if action.default is False:
            return f"{text} (default: off)"
        if action.default is None or action.default == []:
            return f"{text} (default: none)"
        return f"{text} (default: %(default)s)"

    def _expand_help(self, action: argparse.Action) -> str:
        return plain(super()._expand_help(action))

    def _format_text(self, text: str) -> str:
        return super()._format_text(plain(text))

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        paragraphs = []
        for block in re.split(r"\n\s*\n", text.strip("\n")):
            if block.startswith(("try:", " ")) or "\n " in block:
                paragraphs.append("\n".join(indent + line for line in block.splitlines()))
            else:
                paragraphs.append(textwrap.fill(" ".join(block.split()), width,
                                                initial_indent=indent,
                                                subsequent_indent=indent))
        return "\n\n".join(paragraphs)


class Parser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose errors raise :class:`UsageError` (carrying ``prog``) for
    ``cli.main`` to print as one line, whose help uses :class:`HelpFormatter`, which takes
    no abbreviated options (a script's ``--ep`` would silently change meaning when an
    option ``--epsilon`` is added), and which records the options given on the line
    (:func:`given`)."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("formatter_class", HelpFormatter)
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def parse_known_args(self, args=None, namespace=None):  # type: ignore[override]
        words = list(args) if args is not None else None
        parsed, rest = super().parse_known_args(args, namespace)
        if words is not None:
            spelled = {word.split("=", 1)[0] for word in words if word.startswith("-")}
            named = {action.dest for action in self._actions
                     if spelled.intersection(action.option_strings)}
            parsed._given = set(getattr(parsed, "_given", set())) | named
        return parsed, rest

    def error(self, message: str):  # type: ignore[override]
        err = UsageError(message, prog=self.prog)
        err.from_argparse = True  # cli.main adds "(see 'jaxembed COMMAND --help')"
        raise err
