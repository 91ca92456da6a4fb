"""Stage progress for the command line: readable on a terminal and in a log file alike.

On a terminal one line per stage is rewritten in place; elsewhere (a pipe, a CI log) a
line is printed when a stage starts, at each ``step`` of its fraction and when it ends,
so a log shows a few lines per stage instead of hundreds.

Usage::

    progress = ConsoleProgress(prefix="  ")
    result = inference.segment(study, progress=progress)
    progress.close()
"""

from __future__ import annotations

import argparse
import sys
from typing import Optional, TextIO


class ConsoleProgress:
    """A ``progress(stage, fraction, message)`` callback that prints to ``stream`` (stderr)."""

    def __init__(self, prefix: str = "  ", stream: Optional[TextIO] = None, quiet: bool = False,
                 step: float = 0.25, tty: Optional[bool] = None):
        self.prefix, self.quiet, self.step = prefix, quiet, step
        self.stream = stream if stream is not None else sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)()) if tty is None else tty
        self._stage: Optional[str] = None
        self._shown = -1.0
        self._message = ""
        self._printed = ""
        self._open = False  # a rewritten line is on screen without its newline

    def __call__(self, stage: str, fraction: float, message: str = "") -> None:
        if self.quiet:
            return
        fraction = min(max(float(fraction), 0.0), 1.0)
        if stage != self._stage:
            self.close()
            self._stage, self._shown, self._message = stage, -1.0, ""
        self._message = message or self._message
        line = f"{self.prefix}{stage:<12}{fraction:5.0%} {self._message}"
        if self.tty:
            self.stream.write(f"\r{line:<79}")
            self._open = True
        elif (self._shown < 0 or fraction >= self._shown + self.step or (fraction >= 1.0 > self._shown)
              or (fraction >= 1.0 and line != self._printed)):   # the final message of a stage
            self.stream.write(line.rstrip() + "\n")
            self._shown, self._printed = fraction, line
        self.stream.flush()

    def close(self) -> None:
        """End the rewritten line (call after the last stage)."""
        if self._open:
            self.stream.write("\n")
            self.stream.flush()
            self._open = False


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """``--help`` that ends every option's text with its default, except where there is none
    to show (required options, flags, ``None``: their text says what happens instead).

    Usage::

        argparse.ArgumentParser(prog="breastdceseg segment", formatter_class=HelpFormatter)
    """

    def _get_help_string(self, action: argparse.Action) -> str:
        if action.required or action.default is None or action.default is False \
                or action.default is argparse.SUPPRESS or not action.option_strings \
                or "(default" in (action.help or ""):  # the text already says it
            return action.help or ""
        if isinstance(action.default, range):  # seed ranges are typed as a:b
            return f"{action.help or ''} (default: {action.default.start}:{action.default.stop})"
        if isinstance(action.default, (list, tuple)):  # as typed: "X Y Z" (nargs) or "32,64,64" (one value)
            joined = (" " if action.nargs else ",").join(str(v) for v in action.default)
            return f"{action.help or ''} (default: {joined})"
        return super()._get_help_string(action)


def elapsed(seconds: float) -> str:
    """The labelled wall-clock line commands print at the end: ``"elapsed 25.3 s"``."""
    return f"elapsed {seconds:.1f} s"


def tumor_line(tumor: dict) -> str:
    """One readable line of a report's ``tumor`` summary (:func:`clinical.summarize`).

    ``"2.41 mL, longest diameter 29.1 mm (largest of 2 lesions; extent of all 95.8 mm), T2"``:
    the longest diameter is the largest lesion's, the one the T-stage uses; the extent
    (the widest distance across all lesions together) is named as such.
    """
    count = int(tumor.get("lesion_count") or 0)
    text = f"{tumor['volume_ml']:.2f} mL, longest diameter {tumor['longest_diameter_mm']:.1f} mm"
    if count > 1:
        text += f" (largest of {count} lesions; extent of all {tumor.get('extent_mm', 0.0):.1f} mm)"
    elif count == 0:
        text += " (no lesion)"
    return f"{text}, {tumor['t_stage']}"
