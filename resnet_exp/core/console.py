"""What a run prints: its config at start, one line or bar per epoch, a summary table at the end.

On a terminal the config is a tree and the tables fit the window. Piped to a file or a SLURM
log, nothing is wrapped or cut: a table is as wide as its cells, a config line as long as it is.
"""

from __future__ import annotations

import functools
import logging
import os
import warnings
from collections.abc import Callable, Mapping, Sequence

from omegaconf import DictConfig, OmegaConf
from rich.console import Console
from rich.markup import escape
from rich.syntax import Syntax
from rich.table import Table
from rich.text import Text
from rich.tree import Tree

from resnet_exp.core.config import GROUPS, set_by_options
from resnet_exp.core.errors import UserError, report_error

console = Console()
if not console.is_terminal:
    # rich lays out for 80 columns where it cannot ask a terminal: cells would be cut ("resne…")
    console = Console(width=100_000, soft_wrap=True)



def quiet_known_warnings() -> None:
    """Silence the third-party messages every run would print and no user can act on, each by
    its exact message: Lightning's LeafSpec deprecation (its own code, torch 2.10+), its
    cloud-service tips, its `srun` hint outside a SLURM job, its `weights_only` note on a
    SIGTERM checkpoint and its note that a new MLflow experiment is made, Alembic's and
    MLflow's set-up lines when Optuna or MLflow opens its database, matplotlib's layout notes
    on crowded report figures."""
    warnings.filterwarnings("ignore", message=r"`isinstance\(treespec, LeafSpec\)` is deprecated")
    warnings.filterwarnings("ignore", message=r".*constrained_layout.*", module="matplotlib")
    # torch.func's first Hessian-vector product (resnet_exp/analysis/sharpness.py), torch 2.14
    warnings.filterwarnings("ignore", message=r"`torch.jit.script` is deprecated")
    if "SLURM_JOB_ID" not in os.environ:
        # Lightning says it on every run of a machine with SLURM installed; inside an allocation
        # (sbatch without srun, where ranks would hang) it is a real hint, and stays
        warnings.filterwarnings("ignore", message=r"The `srun` command is available on your "
                                "system but is not used")
    for name in ("pytorch_lightning.utilities.rank_zero", "lightning_fabric.utilities.rank_zero",
                 "pytorch_lightning.trainer.connectors.checkpoint_connector",
                 "pytorch_lightning.loggers.mlflow", "lightning_fabric.utilities.seed"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, _KnownNotes) for f in logger.filters):
            logger.addFilter(_KnownNotes())
    for name in ("alembic.runtime.migration", "alembic.runtime.plugins", "mlflow.store.db.utils"):
        logging.getLogger(name).setLevel(logging.WARNING)


class _KnownNotes(logging.Filter):
    # Lightning's set-up lines that say nothing a run does not: no accelerator on a CPU machine
    # (a GPU that is there and unused is still said), the seed (in the config above), the
    # checkpoint each test loads, the end of the epochs the lines above counted
    NOTES = ("💡 Tip:", "`weights_only` was not set", "Experiment with name",
             "GPU available: False", "TPU available: False", "HPU available: False",
             "Seed set to", "Restoring states from the checkpoint",
             "Loaded model weights from the checkpoint", "`Trainer.fit` stopped: `max_epochs=")

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(self.NOTES)


def literal(value: object) -> str:
    """`value` as rich prints it unchanged. Rich reads a string's `[...]` as a style tag and drops
    it: `logger=[tensorboard,mlflow]` would print as `logger=`, a sweep job's folder, which holds
    its overrides, as `0_logger=,model=...`. Every value a user gave (overrides, names, paths,
    config keys) goes through here before rich sees it."""
    return escape(str(value))


def add_row(table: Table, *cells: object, style: str | None = None) -> None:
    """A row of `table` printing each value as it is (`literal`); a `Text` cell keeps its own
    style, as rich does not read markup in one."""
    table.add_row(*(c if isinstance(c, Text) else literal(c) for c in cells), style=style)


def _text(yaml: str):
    if console.is_terminal:
        return Syntax(yaml, "yaml", theme="ansi_dark", background_color="default")
    return Text(yaml)  # Syntax pads every line to the console's width


def config_tree(cfg: DictConfig) -> Tree:
    tree = Tree("[bold]config[/bold]", guide_style="dim")
    # the groups first, in reading order; the other top-level keys (module, name, seed) after
    keys = [k for k in GROUPS if k in cfg] + [k for k in cfg if k not in GROUPS]
    for key in keys:
        value = cfg[key]
        branch = tree.add(f"[bold cyan]{literal(key)}[/bold cyan]")
        if isinstance(value, DictConfig):
            text = OmegaConf.to_yaml(value, resolve=True)
        else:
            text = str(value)
        branch.add(_text(text.rstrip()))
    return tree


def choices_lines(choices: Mapping[str, object], overrides: Sequence[str]) -> str:
    """The short form: the option of each group, then what the command line set."""
    chosen = " ".join(f"{g}={choices[g]}" for g in GROUPS if choices.get(g) is not None)
    given = " ".join(overrides) or "(none)"
    return f"config: {chosen}\noverrides: {given}"


def print_config(cfg: DictConfig, mode: str, choices: Mapping[str, object],
                 overrides: Sequence[str], sweep_job: bool) -> None:
    """`extras.print_config`: full (the resolved tree, ~180 lines), groups (choices and
    overrides), none; auto: for a run, the groups and what an experiment, trick or debug option
    set (one screen: the tree is a flag away), for each job of a sweep the groups alone."""
    if mode == "full":
        console.print(config_tree(cfg))
    elif mode in ("groups", "auto"):
        console.print(literal(choices_lines(choices, overrides)), highlight=False)
    if mode == "auto" and not sweep_job:
        for option, keys in set_by_options(choices).items():
            values = " ".join(f"{k}={OmegaConf.select(cfg, k, default='?')}" for k in keys)
            console.print(literal(f"{option} sets: {values}"), highlight=False)


def _fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value)


def summary_table(title: str, rows: Mapping[str, object]) -> Table:
    # "fold": a name or number too wide for the terminal goes on to the next line, never "…"
    table = Table(title=literal(title), show_header=True, header_style="bold")
    table.add_column("metric", overflow="fold")
    table.add_column("value", justify="right", overflow="fold")
    for key, value in rows.items():
        add_row(table, key, _fmt(value))
    return table


def print_interrupted(where: str, run_dir) -> None:
    """One line on stderr: where an interrupted run stopped, and the command that continues it."""
    import shlex
    import sys

    print(f"interrupted {where}; resume with: python -m resnet_exp "
          f"resume={shlex.quote(str(run_dir))}", file=sys.stderr, flush=True)


def print_summary(title: str, rows: Mapping[str, object],
                  places: Mapping[str, object] | None = None) -> None:
    """The numbers as a table, then each place (a folder, a URL) on a line of its own, whole:
    a user copies it, and a table cell would wrap or cut it."""
    console.print(summary_table(title, rows))
    for label, place in (places or {}).items():
        console.print(f"{label}: {place}", markup=False, highlight=False, soft_wrap=True)


def command(main: Callable[..., int]) -> Callable[..., int]:
    """A command line's `main(argv) -> status`, with a UserError reported as one line, status 2,
    and the third-party notes no user can act on kept off the console."""

    @functools.wraps(main)
    def wrapped(*args, **kwargs) -> int:
        quiet_known_warnings()
        try:
            return main(*args, **kwargs)
        except UserError as e:
            return report_error(e)

    return wrapped
