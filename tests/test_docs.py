"""Every command that README.md and docs/*.md show runs as written, and their links resolve.

Which commands: each line of a fenced code block that starts with `python -m resnet_exp...` or
`resnet-exp` (after an optional `srun`), joined over `\\` continuations, without its trailing
`# comment`; and each such command, with arguments, in backticks in a table row (the README's
studies index).
Placeholders are filled in: `<run>` and `<sweep>` name the finished smoke run and sweep below;
any other `<...>` fails the test, since a reader could not fill it in either. Each command runs in
a scratch folder that stands for the reader's checkout (`outputs/` relative to it); all but the
sweeps run in bash, with this virtualenv's `python` first on PATH, so quoting, globs and
`${VARS}` behave as typed (a sweep's arguments are split as bash splits them, by shlex).

How each kind runs, cheaply but as a user would:

- A training command runs with `--cfg job` appended: Hydra composes the whole config from conf/,
  applying every override (a misspelt key or option fails as it would for the reader), prints it
  and trains nothing, so data that needs a download is never touched. `--help` runs as it is.
- A sweep (`-m`) cannot take `--cfg job` (Hydra 1.3: "Only one of --run, --multirun, --cfg,
  --info and --shell_completion can be specified"), so it runs dry, in this process
  (conftest.dry_sweep): Hydra's own `-m` path and the sweeper the composed config names expand
  the command into jobs (an experiment's own `hydra.sweeper.params` included), and a stand-in
  for the launcher composes every job, resolves it, interpolations and all, in its job folder
  and passes it through the run's settings check, training nothing. A launcher the command names
  (joblib, SLURM) is instantiated from its config, never started.
- `python -m resnet_exp.eval`, `.reproduce`, `.report`, `.analyze`, `.runs` and `resume=<folder>`
  run for real, in bash, against the shared smoke run and smoke sweep (conftest.SMOKE_RUN and
  SMOKE_SWEEP: a few CPU batches of the embedded digits); an analysis on 16 test images
  (`--images 16` appended: argparse's last value wins). Marked slow.

Shell-only lines (`make`, `tensorboard`, `sbatch`, `optuna`, `python scripts/...`) are not run.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import CONF, ONE_THREAD, ROOT, dry_sweep

from resnet_exp import runs
from resnet_exp.runs import read
from resnet_exp.runs.record import write_json_atomic

DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
RUN = "2026-01-01_12-00-00_resnet20_digits"  # the README's example name, as a run names itself
SWEEP = "2026-01-01_12-00-00"
ABLATION = "2026-01-01_13-00-00"  # a tricks ablation's sweep (`--baseline trick=baseline`)
PLACEHOLDERS = {"<run>": RUN, "<sweep>": SWEEP, "<ablation-sweep>": ABLATION}
COMMAND = re.compile(r"^\s*(?:srun\s+)?((?:python -m resnet_exp\b|resnet-exp\b).*)$")
REPLAYING = ("resnet_exp.eval", "resnet_exp.reproduce", "resnet_exp.report", "resnet_exp.analyze",
             "resnet_exp.runs")


def commands(path: Path) -> list[tuple[int, str]]:
    """(line number, command) for every command in `path`'s code blocks and table rows."""
    found, in_block, pending, start = [], False, None, 0
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if line.lstrip().startswith("```"):
            in_block = not in_block
            continue
        if in_block:
            if pending is not None:
                pending += " " + line.strip()
            elif match := COMMAND.match(line):
                pending, start = match.group(1), number
            if pending is not None and pending.endswith("\\"):
                pending = pending[:-1].rstrip()
            elif pending is not None:
                found.append((start, re.sub(r"\s+#.*$", "", pending).strip()))
                pending = None
        elif line.startswith("|"):
            for span in re.findall(r"`([^`]+)`", line):
                if COMMAND.match(span) and len(shlex.split(span)) > 3:  # a name alone is prose
                    found.append((number, span.strip()))
    return found


# Its commands need the files its examples write: tests/test_extending.py writes them into a
# folder and runs each command there.
RUN_ELSEWHERE = (ROOT / "docs" / "extending.md",)


def all_commands() -> list:
    seen, params = set(), []
    for path in DOCS:
        for number, command in commands(path) if path not in RUN_ELSEWHERE else ():
            if command not in seen:  # the README's studies index repeats docs/studies.md
                seen.add(command)
                params.append(pytest.param(command, id=f"{path.name}:{number}"))
    return params


def fill(command: str) -> str:
    for placeholder, value in PLACEHOLDERS.items():
        command = command.replace(placeholder, value)
    unknown = re.findall(r"<[^<>]*>", command)
    assert not unknown, f"placeholder {unknown} has no stand-in: write the command runnable"
    return command


def module_and_args(command: str) -> tuple[str, list[str]]:
    tokens = shlex.split(command)
    if tokens[0] == "resnet-exp":
        return "resnet_exp", tokens[1:]
    assert tokens[:2] == ["python", "-m"], command
    return tokens[2], tokens[3:]


def kind(command: str) -> str:
    module, args = module_and_args(command)
    if module in REPLAYING:
        return "replay"
    assert module == "resnet_exp", f"unknown command {module}"
    resume = [a.split("=", 1)[1] for a in args if a.startswith("resume=")]
    if resume and resume[-1].lower() not in ("true", "false", "null"):
        return "replay"
    if "-m" in args or "--multirun" in args:
        return "sweep"
    if any(a in ("--help", "-h", "--cfg", "--info") for a in args):
        return "as_is"
    return "train"


def bash(command: str, cwd: Path, timeout: float = 180) -> subprocess.CompletedProcess:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
           "PYTHONPATH": str(ROOT), "HYDRA_FULL_ERROR": "0", **ONE_THREAD}
    return subprocess.run(["bash", "-c", command], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)


def check(result: subprocess.CompletedProcess, command: str) -> None:
    assert result.returncode == 0, (
        f"{command}\nexit {result.returncode}\n{result.stdout[-2000:]}\n{result.stderr[-3000:]}")


def composed_job(stdout: str) -> dict:
    cfg = yaml.safe_load(stdout)
    assert isinstance(cfg, dict) and {"model", "data", "trainer"} <= cfg.keys(), stdout[:500]
    return cfg


@pytest.fixture(scope="module")
def checkout(smoke_run, smoke_sweep, tmp_path_factory) -> Path:
    """A reader's folder holding a finished run and a finished sweep (copies of the shared ones,
    conftest.SMOKE_RUN and SMOKE_SWEEP) at the paths the docs' placeholders name."""
    cwd = tmp_path_factory.mktemp("reader")
    shutil.copytree(smoke_run, cwd / "outputs" / "runs" / RUN)
    shutil.copytree(smoke_sweep, cwd / "outputs" / "multirun" / SWEEP)
    # an ablation: the finished run as two tricks x two seeds, as the ablation's jobs record them
    for job, (trick, seed) in enumerate([(t, s) for t in ("baseline", "ema") for s in (1, 2)]):
        folder = cwd / "outputs" / "multirun" / ABLATION / f"{job}_trick={trick},seed={seed}"
        shutil.copytree(smoke_run, folder, ignore=shutil.ignore_patterns("checkpoints"))
        (folder / runs.OVERRIDES_FILE).write_text(yaml.safe_dump([f"trick={trick}",
                                                                  f"seed={seed}"]))
        metrics = read.read_json(folder / runs.METRICS_FILE)
        write_json_atomic(folder / runs.METRICS_FILE, {**metrics, "test/acc_ema": 0.5})
    return cwd


COMMANDS = all_commands()
QUICK = [p for p in COMMANDS if kind(fill(p.values[0])) != "replay"]
REPLAYS = [p for p in COMMANDS if kind(fill(p.values[0])) == "replay"]


def test_the_docs_show_commands_of_every_kind():
    kinds = {kind(fill(p.values[0])) for p in COMMANDS}
    assert {"train", "sweep", "replay"} <= kinds, kinds
    assert any("resnet_exp.eval" in p.values[0] for p in REPLAYS)


@pytest.mark.slow
@pytest.mark.parametrize("command", QUICK)
def test_command_composes(command, in_tmp):
    command = fill(command)
    if kind(command) == "sweep":
        assert dry_sweep(module_and_args(command)[1]), "the sweep has no job"
    elif kind(command) == "as_is":
        check(bash(command, in_tmp), command)
        return
    else:
        result = bash(f"{command} --cfg job", in_tmp)
        check(result, command)
        composed_job(result.stdout)
    assert not list(in_tmp.rglob("run.json")), "a command that composes must train nothing"


@pytest.mark.slow
@pytest.mark.parametrize("command", REPLAYS)
def test_command_runs_on_a_finished_run(command, checkout):
    command = fill(command)
    if module_and_args(command)[0] == "resnet_exp.analyze":
        command += " --images 16"  # as documented, on fewer images: the cost is per image
    check(bash(command, checkout, timeout=300), command)


def slug(heading: str, seen: dict[str, int]) -> str:
    """GitHub's anchor for a heading: lower case, punctuation but `-` and `_` dropped, spaces
    to hyphens, repeats numbered."""
    base = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
    count = seen.get(base, 0)
    seen[base] = count + 1
    return base if count == 0 else f"{base}-{count}"


def anchors(path: Path) -> set[str]:
    seen: dict[str, int] = {}
    text = re.sub(r"```.*?```", "", path.read_text(), flags=re.S)
    return {slug(h, seen) for h in re.findall(r"^#{1,6}\s+(.+)$", text, flags=re.M)}


@pytest.mark.parametrize("path", DOCS, ids=lambda p: p.name)
def test_links_resolve(path):
    text = re.sub(r"```.*?```", "", path.read_text(), flags=re.S)
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if re.match(r"[a-z]+://", target):
            continue
        file, _, anchor = target.partition("#")
        linked = (path.parent / file).resolve() if file else path
        assert linked.is_file(), f"{path.name}: link to missing {target}"
        if anchor:
            assert anchor in anchors(linked), f"{path.name}: no heading for {target}"


@pytest.mark.parametrize("path", DOCS, ids=lambda p: p.name)
def test_named_files_exist(path):
    """Every file of this repository named in backticks exists (the package was regrouped once
    already: a stale path sends the reader nowhere)."""
    for name in re.findall(r"`((?:resnet_exp|conf|scripts|tests|docs)/[\w./-]+)`",
                           path.read_text()):
        assert (ROOT / name).exists(), f"{path.name} names {name}, which does not exist"


def test_config_table_lists_every_option():
    """The README's config table against the tree: every group, every option file."""
    rows = re.findall(r"^\| `([\w/]+)` \| `([^`]+)` \|", (ROOT / "README.md").read_text(), re.M)
    table = {group: set(options.split()) for group, options in rows}
    groups = {p.name for p in CONF.iterdir() if p.is_dir() and p.name != "hydra"}
    assert groups | {"hydra/launcher"} == table.keys()
    for group, options in table.items():
        files = {p.stem for p in (CONF / group).glob("*.yaml") if p.stem[0] != "_"}
        assert options == files, f"conf/{group}: the README lists {sorted(options)}"


def test_readme_is_the_short_entry():
    lines = (ROOT / "README.md").read_text().splitlines()
    assert len(lines) <= 170, len(lines)
    assert any("make test" in line for line in lines[:40])


@pytest.mark.parametrize("path", DOCS, ids=lambda p: p.name)
def test_no_tracker_numbers(path):
    assert not re.findall(r"(?i)\bissue\s*#?\d+|(?<![\w&])#\d+\b", path.read_text())
