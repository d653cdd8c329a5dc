"""IPython magics: ``%load_ext kandinsky_nb``, then ``%knb ...`` (a line) or ``%%knb ...`` (a cell whose body is the
prompt). Every result is a rich object with a plain-text fallback (a DataFrame, a Generation, a spend summary).

::

    %knb runs [--last 20] [--status ok,failed] [--sweep NAME] [--q TEXT]   the newest runs, as a DataFrame
    %knb cost                                                             spend this session, today, in all
    %knb status                                                           where the log is, its size and schema
    %knb show ID                                                          a run's image, full size
    %knb code ID                                                          the next cell becomes code reproducing run ID
    %knb session [--engine demo] [--budget 1.5]                           the magics' Session (made on first use)
    %%knb generate [--steps 30] [--seed 7] [--cfg 7.5] [--scheduler Euler] [--size 1280x768] [--negative TEXT]
    %%knb sweep NAME steps=10,20,30 CFGScale=3,5 seed=1,2 [--run]         plan a sweep (the cell is the prompt)

Reads go through the read-only :class:`RunLogReader`; generation and sweeps through a real :class:`Session`, the only
place that logs a run.
"""

from __future__ import annotations

import argparse
import html
import shlex
from dataclasses import dataclass
from typing import Any

from IPython.core.error import UsageError
from IPython.core.magic import Magics, line_cell_magic, magics_class

from .. import settings
from .code import reproduce_code
from .reader import SUMMARY_COLUMNS, QueryParameterError, RunFilter, RunLogReader, RunNotFoundError

__all__ = ["KandinskyMagics", "SpendSummary"]


class _Parser(argparse.ArgumentParser):
    """argparse that raises (IPython shows a UsageError) instead of exiting the kernel."""

    def error(self, message: str) -> Any:
        raise UsageError(f"%knb: {message}\n\n{self.format_usage()}")


def _size(text: str) -> tuple[int, int]:
    try:
        width, height = (int(part) for part in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--size {text!r} must be WIDTHxHEIGHT, such as 1280x768") from None
    return width, height


def _parser() -> _Parser:
    parser = _Parser(prog="%knb", add_help=False)
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    runs = commands.add_parser("runs", help="the newest runs, as a DataFrame")
    runs.add_argument("--last", type=int, default=20)
    runs.add_argument("--status", default=None, help="comma-separated statuses")
    runs.add_argument("--sweep", default=None)
    runs.add_argument("--q", default=None, help="text in the prompt")
    commands.add_parser("cost", help="spend this session, today and in all")
    commands.add_parser("status", help="where the run log is")
    for name in ("show", "code"):
        command = commands.add_parser(name)
        command.add_argument("id", type=int)
    session = commands.add_parser("session", help="make (or show) the Session the magics use")
    session.add_argument("--engine", default=None, choices=["runware", "local", "demo"])
    session.add_argument("--budget", type=float, default=None)
    generate = commands.add_parser("generate", help="%%knb generate: the cell body is the prompt")
    generate.add_argument("--steps", type=int)
    generate.add_argument("--seed", type=int)
    generate.add_argument("--cfg", "--CFGScale", dest="CFGScale", type=float)
    generate.add_argument("--scheduler")
    generate.add_argument("--size", type=_size)
    generate.add_argument("--negative", dest="negativePrompt")
    generate.add_argument("--results", dest="numberResults", type=int)
    sweep = commands.add_parser("sweep", help="%%knb sweep NAME axis=values ...: the cell body is the prompt")
    sweep.add_argument("name")
    sweep.add_argument("axes", nargs="*", help="field=values, e.g. steps=10,20,30 or steps='10-50 (+10)'")
    sweep.add_argument("--run", action="store_true", help="run it now (else only plan and estimate)")
    return parser


@dataclass(frozen=True)
class SpendSummary:
    """What ``%knb cost`` shows: runs, images and USD this session (since the magics loaded), today, in all."""

    rows: dict[str, dict[str, Any]]

    def __repr__(self) -> str:
        lines = [f"{'':8} {'runs':>6} {'images':>7} {'cost USD':>10}"]
        lines += [f"{k:8} {v['runs']:>6} {v['images']:>7} {v['cost_usd']:>10.4f}" for k, v in self.rows.items()]
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        cells = "".join(
            f"<tr><th>{html.escape(k)}</th><td>{v['runs']}</td><td>{v['images']}</td><td>${v['cost_usd']:.4f}</td></tr>"
            for k, v in self.rows.items()
        )
        return (
            "<table class='knb-spend'><thead><tr><th></th><th>runs</th><th>images</th><th>cost</th></tr></thead>"
            f"<tbody>{cells}</tbody></table>"
        )


@magics_class
class KandinskyMagics(Magics):
    """``%knb`` / ``%%knb``. The run log is the toolkit's home (``$KANDINSKY_NB_HOME``, else ``~/.kandinsky_nb``)."""

    def __init__(self, shell: Any = None) -> None:
        super().__init__(shell)
        self.reader = RunLogReader(settings.home_dir())
        self.session: Any = None

    @line_cell_magic
    def knb(self, line: str, cell: str | None = None) -> Any:
        """kandinsky-nb: %knb runs | cost | status | show ID | code ID | session; %%knb generate | sweep NAME."""
        try:
            args = _parser().parse_args(shlex.split(line))
        except ValueError as exc:  # unbalanced quotes
            raise UsageError(f"%knb: cannot split {line!r}: {exc}") from None
        prompt = (cell or "").strip() or None
        if args.command in ("generate", "sweep") and prompt is None:
            raise UsageError(
                f"%%knb {args.command}: the cell body is the prompt; write the prompt below the magic line"
            )
        try:
            return getattr(self, f"_{args.command}")(args, prompt)
        except (QueryParameterError, RunNotFoundError) as exc:
            raise UsageError(str(exc)) from None

    # -- reading the log ------------------------------------------------------------------------------------------
    def _runs(self, args: argparse.Namespace, prompt: str | None) -> Any:
        import pandas as pd

        run_filter = RunFilter.from_query(
            {"limit": str(args.last), "status": args.status, "sweep": args.sweep, "q": args.q}
        )
        columns = [c for c in SUMMARY_COLUMNS if c != "image_path"] + ["has_image"]
        return pd.DataFrame(self.reader.runs(run_filter)["runs"], columns=columns).set_index("id")

    def _cost(self, args: argparse.Namespace, prompt: str | None) -> SpendSummary:
        cost = self.reader.cost()
        return SpendSummary({"session": cost["session"], "today": cost["today"], "all": cost["all"]})

    def _status(self, args: argparse.Namespace, prompt: str | None) -> dict[str, Any]:
        return self.reader.status()

    def _show(self, args: argparse.Namespace, prompt: str | None) -> Any:
        from IPython.display import Image

        return Image(data=self.reader.image_file(args.id).read_bytes())

    def _code(self, args: argparse.Namespace, prompt: str | None) -> None:
        # Like %load: the code lands in the next cell for the researcher to read, edit and run.
        self.shell.set_next_input(reproduce_code(self.reader.run(args.id)), replace=False)

    # -- running --------------------------------------------------------------------------------------------------
    def _session(self, args: argparse.Namespace, prompt: str | None) -> Any:
        import kandinsky_nb as knb

        if args.engine is not None or args.budget is not None or self.session is None:
            if self.session is not None:
                self.session.close()
            self.session = knb.Session(engine=args.engine, budget=args.budget)
        return self.session

    def _current_session(self) -> Any:
        if self.session is None:
            self._session(argparse.Namespace(engine=None, budget=None), None)
        return self.session

    def _generate(self, args: argparse.Namespace, prompt: str | None) -> Any:
        fields = {
            name: getattr(args, name)
            for name in ("steps", "seed", "CFGScale", "scheduler", "negativePrompt", "numberResults")
            if getattr(args, name) is not None
        }
        if args.size is not None:
            fields["width"], fields["height"] = args.size
        return self._current_session().generate(prompt, **fields)

    def _sweep(self, args: argparse.Namespace, prompt: str | None) -> Any:
        axes: dict[str, str] = {}
        for item in args.axes:
            field, equals, values = item.partition("=")
            if not equals or not field or not values:
                raise UsageError(f"%%knb sweep: {item!r} must be field=values, such as steps=10,20,30 or seed=1,2")
            axes[field] = values
        plan = self._current_session().sweep(prompt, name=args.name, **axes)
        estimate = plan.estimate()
        if not args.run:
            return estimate
        from IPython.display import display

        display(estimate)
        return plan.run()
