"""What a run prints: the resolved config as a tree at start, a summary table at the end."""

from __future__ import annotations

from collections.abc import Mapping

from omegaconf import DictConfig, OmegaConf
from rich.console import Console
from rich.syntax import Syntax
from rich.table import Table
from rich.tree import Tree

from resnet_exp.config import GROUPS

console = Console()



def config_tree(cfg: DictConfig) -> Tree:
    tree = Tree("[bold]config[/bold]", guide_style="dim")
    # the groups first, in reading order; the other top-level keys (module, name, seed) after
    keys = [k for k in GROUPS if k in cfg] + [k for k in cfg if k not in GROUPS]
    for key in keys:
        value = cfg[key]
        branch = tree.add(f"[bold cyan]{key}[/bold cyan]")
        if isinstance(value, DictConfig):
            text = OmegaConf.to_yaml(value, resolve=True)
        else:
            text = str(value)
        branch.add(Syntax(text.rstrip(), "yaml", theme="ansi_dark", background_color="default"))
    return tree


def print_config(cfg: DictConfig) -> None:
    console.print(config_tree(cfg))


def _fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value)


def summary_table(title: str, rows: Mapping[str, object]) -> Table:
    table = Table(title=title, show_header=True, header_style="bold")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key, value in rows.items():
        table.add_row(key, _fmt(value))
    return table


def print_summary(title: str, rows: Mapping[str, object]) -> None:
    console.print(summary_table(title, rows))
