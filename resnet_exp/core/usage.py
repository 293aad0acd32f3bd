"""What `python -m resnet_exp --help` prints, without Hydra's help generator.

Hydra lists the config groups by building a fresh copy of its config repository, ConfigStore
included, for each of about 100 group lookups (hydra/_internal/hydra.py: `list_all_config_groups`
and `format_config_groups`, run for the app's groups and again for Hydra's own): 0.45 s on an
idle 2-core CPU, 2 s when it is busy, more with each Hydra plugin installed. The app's groups are
the folders of conf/, so `text()` lists those and fills in Hydra's help template
(conf/hydra/default.yaml) as Hydra does: `--help` then answers in the time Hydra takes to start.
Anything else (`--hydra-help`, `--help` with overrides, a template asking for $CONFIG) goes to
Hydra; tests/test_speed.py checks that both print the same.
"""

from __future__ import annotations

import string
from pathlib import Path

from resnet_exp.core.config import CONF_DIR

# What Hydra's template may ask for that only Hydra can produce cheaply enough to be worth it.
HYDRA_ONLY = ("$FLAGS_HELP", "$HYDRA_CONFIG_GROUPS", "$CONFIG")


def config_groups(conf: Path = CONF_DIR) -> str:
    """Hydra's `$APP_CONFIG_GROUPS`: `group: option, option` for every folder holding configs,
    nested ones as `parent/child`, Hydra's own (`hydra/...`) left out."""
    lines = []
    for folder in sorted(p for p in conf.rglob("*") if p.is_dir()):
        group = folder.relative_to(conf).as_posix()
        if group == "hydra" or group.startswith("hydra/") or "__pycache__" in group:
            continue
        options = sorted(p.stem for p in folder.glob("*.yaml") if p.is_file())
        if options:
            lines.append(f"{group}: {', '.join(options)}")
    return "".join(f"{line}\n" for line in sorted(lines))


# The packages a run's numbers depend on, whose versions `--version` prints after resnet-exp's.
STACK = ("torch", "torchvision", "pytorch-lightning", "hydra-core")


def version() -> str:
    """`resnet-exp X (torch Y, ...)`, read from the installed packages' metadata: no import of
    torch. Hydra's own `--version` printed only Hydra's."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as installed

    def of(name: str) -> str:
        try:
            return installed(name)
        except PackageNotFoundError:
            return "not installed"

    return f"resnet-exp {of('resnet-exp')} ({', '.join(f'{n} {of(n)}' for n in STACK)})"


def text(argv: list[str], conf: Path = CONF_DIR) -> str | None:
    """The help (or version) text for `argv` (the arguments after the program), or None where
    Hydra must answer."""
    if argv in (["--version"], ["-V"]):
        return version()
    if argv not in (["--help"], ["-h"]):
        return None
    from omegaconf import OmegaConf

    hydra_node = OmegaConf.load(conf / "hydra" / "default.yaml")
    if "help" not in hydra_node:
        return None
    node = OmegaConf.create({"hydra": {"help": hydra_node.help}})
    template = node.hydra.help.template  # resolves ${hydra.help.header} and the like
    if any(key in template for key in HYDRA_ONLY):
        return None
    return string.Template(template).safe_substitute(APP_CONFIG_GROUPS=config_groups(conf))
