"""docs/extending.md, done as a reader does it: every code block of the page that opens with a
path (`# mylab/tinynet.py`) is written into a project folder, and each example's commands run
there, in this process, in the order the page gives them; then what the page says each example
does is checked in the run folder.

A command is a line of a `bash` block that starts with `python -m`: `resnet_exp` runs through
the Python API (`resume=` first becomes the run's command line, as the CLI does), the other
commands through their `main`. A `# error: ...` line under a command is the error the page
promises: its parts between ` ... ` must appear in that order in the error. `<run>` is the
folder of the section's last run (the replay section: the model example's; the analysis's
Python lines: a run trained without the analysis), relative to the project folder.
"""

from __future__ import annotations

import importlib
import json
import re
import shlex
import sys
from pathlib import Path

import pytest
import torch
import yaml
from hydra.core.global_hydra import GlobalHydra
from hydra.utils import instantiate

import resnet_exp
from resnet_exp import runs
from resnet_exp.api import Run
from resnet_exp.core import config
from resnet_exp.core.errors import UserError
from resnet_exp.runs import read, resume

ROOT = Path(__file__).resolve().parents[1]
PAGE = (ROOT / "docs" / "extending.md").read_text()
EXAMPLES = ("A model", "A dataset", "An augmentation", "A callback", "An analysis", "A logger")
BLOCK = re.compile(r"^```(\w*)\n(.*?)^```", re.M | re.S)
PATH_LINE = re.compile(r"# ((?:\w+/)+\w+\.(?:py|yaml))\n")


def section(title: str) -> str:
    (text,) = re.findall(rf"^## {re.escape(title)}\n(.*?)(?=^## |\Z)", PAGE, re.M | re.S)
    return text


def blocks(text: str) -> list[tuple[str, str]]:
    return BLOCK.findall(text)


def files(text: str) -> dict[str, str]:
    """path -> content of every block that opens with its path."""
    return {m.group(1): body for _, body in blocks(text) if (m := PATH_LINE.match(body))}


def commands(text: str) -> list[tuple[list[str], str | None]]:
    """(tokens, the promised error or None) of each command of the bash blocks, in order."""
    found = []
    for language, body in blocks(text):
        for line in body.splitlines() if language == "bash" else ():
            if line.startswith("python -m "):
                found.append((shlex.split(line), None))
            elif line.startswith("# error: "):
                found[-1] = (found[-1][0], line.removeprefix("# error: "))
    return found


def snippets(text: str) -> list[str]:
    """The Python blocks that are no file: lines to run as they are."""
    return [body for language, body in blocks(text)
            if language == "python" and not PATH_LINE.match(body)]


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """The reader's `myproject/`, holding every file of the page, as the working folder with
    its code importable (`python -m` puts the working folder on sys.path)."""
    folder = tmp_path_factory.mktemp("myproject")
    for path, text in files(PAGE).items():
        (folder / path).parent.mkdir(parents=True, exist_ok=True)
        (folder / path).write_text(text)
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(folder)
        patch.syspath_prepend(str(folder))
        yield folder
    for name in [m for m in sys.modules if m.split(".")[0] == "mylab"]:
        del sys.modules[name]
    GlobalHydra.instance().clear()


def execute(tokens: list[str], run: Path | None, capsys):
    """The command with `<run>` filled in: (a Run, or a command's exit status; the error)."""
    tokens = [t.replace("<run>", run.name) if run else t for t in tokens]
    assert tokens[:2] == ["python", "-m"], tokens
    module, args = tokens[2], tokens[3:]
    capsys.readouterr()
    try:
        if module != "resnet_exp":
            status = importlib.import_module(module).main(args)
            return status, (capsys.readouterr().err if status else None)
        if any(a.startswith("resume=") for a in args):
            args = resume.command_line(["resnet_exp", *args])[1:]
        return resnet_exp.run(args), None
    except UserError as e:
        return None, str(e)
    except SystemExit:  # a setting refused before the run folder is made
        return None, capsys.readouterr().err


def run_section(title: str, capsys, run: Path | None = None) -> list:
    """Each command of the section, checked against its promised error; their results."""
    results = []
    for tokens, promised in commands(section(title)):
        result, error = execute(tokens, run, capsys)
        if promised is None:
            assert error is None, f"{shlex.join(tokens)}\n{error}"
            assert result == 0 if isinstance(result, int) else result.status == "finished"
        else:
            assert error is not None, f"{shlex.join(tokens)} ran, the page says it fails"
            promised = promised.replace("<run>", run.name) if run else promised
            assert re.search(".*".join(map(re.escape, promised.split(" ... "))), error), error
        results.append(result)
        run = result.dir if isinstance(result, Run) else run
    return results


def metrics_of(run_dir: Path) -> dict:
    return read.read_json(run_dir / runs.METRICS_FILE)


def test_each_example_opens_with_its_command_and_has_the_files_its_row_names():
    table = dict(re.findall(r"^\| an? (\w+) \| (.*?) \|", PAGE, re.M))
    for title in EXAMPLES:
        text = section(title)
        language, first = blocks(text)[0]
        assert language == "bash" and first.startswith("python -m resnet_exp "), title
        named = set(re.findall(r"`([\w/]+\.(?:py|yaml))`", table[title.split()[1]]))
        assert named and named <= files(text).keys(), (title, named)
    for path, text in files(PAGE).items():
        assert path.startswith(("mylab/", "myconf/")), path
        if path.endswith(".yaml"):
            assert isinstance(yaml.safe_load(text), dict), path


@pytest.fixture(scope="module")
def model_run(project) -> Path:
    [(command, _)] = commands(section("A model"))
    run = resnet_exp.run(command[3:])
    assert run.status == "finished", run
    return run.dir


@pytest.mark.slow
def test_a_model(model_run):
    assert metrics_of(model_run)["test/acc"] > 0.5  # chance: 0.1 on the digits
    assert "model=tinynet" in read.read_json(model_run / runs.RUN_FILE)["overrides"]
    lesion = json.loads((model_run / runs.ANALYSIS_DIR / "lesion.json").read_text())
    # the blocks its structure() declares, each removed in turn
    assert [b["block"] for b in lesion["blocks"]] == ["layer1.0", "layer1.1"]


@pytest.mark.slow
def test_a_dataset(project, capsys):
    (run,) = run_section("A dataset", capsys)
    metrics = metrics_of(run.dir)
    assert "test/acc" in metrics
    assert list(metrics["test/per_class"]) == ["horizontal", "vertical", "diagonal"]
    assert sum(c["support"] for c in metrics["test/per_class"].values()) == 200  # test_size


@pytest.mark.slow
def test_an_augmentation(project, capsys):
    (run,) = run_section("An augmentation", capsys)
    assert (run.dir / runs.FIGURES_DIR / "augmented_samples.png").is_file()
    [(tokens, _)] = commands(section("An augmentation"))
    augmentation = instantiate(config.compose(tokens[3:]).augmentation)
    assert type(augmentation).__name__ == "GaussianNoise"

    def noise(seed: int):
        return augmentation.after_normalize(torch.zeros(64, 1, 8, 8),
                                            torch.Generator().manual_seed(seed))

    assert noise(0).std() == pytest.approx(0.2, rel=0.1)
    assert torch.equal(noise(0), noise(0)) and not torch.equal(noise(0), noise(1))


@pytest.mark.slow
def test_a_callback(project, capsys):
    (run,) = run_section("A callback", capsys)
    rows = (run.dir / "weight_norm.csv").read_text().splitlines()
    assert rows[0] == "epoch,norm" and len(rows) == 1 + 2  # trainer.max_epochs=2
    assert metrics_of(run.dir)["weights/norm"] == float(rows[-1].split(",")[1])
    chosen = config.compose(["callbacks=with_weight_norm", "hydra.searchpath=[file://myconf]"])
    assert chosen.callbacks.weight_norm._target_ == "mylab.weight_norm.WeightNorm"
    assert "model_checkpoint" in chosen.callbacks  # the default set, extended


@pytest.mark.slow
def test_an_analysis(project, capsys):
    from resnet_exp.models.resnet import CifarResNet
    from resnet_exp.models.structure import structure_of

    run, report, refused = run_section("An analysis", capsys)
    result = json.loads((run.dir / runs.ANALYSIS_DIR / "branch_share.json").read_text())
    blocks_of_resnet20 = [b.name for b in structure_of(CifarResNet(depth=20)).blocks]
    assert list(result["blocks"]) == blocks_of_resnet20
    assert result["summary"]["branch_share"] > 0
    assert report == 0 and refused is None
    (table,) = (project / "outputs" / "reports").glob("*/report.csv")
    assert "analysis/branch_share mean" in table.read_text().splitlines()[0]

    plain = resnet_exp.run(["trainer=smoke", "callbacks=lean"])  # trained without it
    (lines,) = snippets(section("An analysis"))
    exec(compile(lines.replace("<run>", plain.dir.name), "extending.md", "exec"), {})
    shares = json.loads((plain.dir / runs.ANALYSIS_DIR / "branch_share.json").read_text())
    assert list(shares["blocks"]) == blocks_of_resnet20


@pytest.mark.slow
def test_a_logger(project, capsys):
    (run,) = run_section("A logger", capsys)
    lines = [json.loads(line) for line in (run.dir / "metrics.jsonl").read_text().splitlines()]
    assert any("val/acc" in line for line in lines[:-1])
    assert lines[-1]["metrics"]["test/acc"] == metrics_of(run.dir)["test/acc"]
    assert lines[-1]["settings"]["choice/model"] == "resnet20"
    assert list((run.dir / runs.TENSORBOARD_DIR).glob("events.out.tfevents.*"))


@pytest.mark.slow
def test_replaying_a_run_of_your_own_code(model_run, capsys):
    title = "Replaying a run of your own code"
    before = set(model_run.parent.iterdir())
    _, resumed, _, analysed, refused = run_section(title, capsys, run=model_run)
    (eval_dir,) = (model_run / "eval").iterdir()
    assert metrics_of(eval_dir)["test/acc"] == pytest.approx(metrics_of(model_run)["test/acc"])
    assert resumed.dir == model_run and resumed.metrics == metrics_of(model_run)
    (new,) = set(model_run.parent.iterdir()) - before
    record = read.read_json(new / runs.RUN_FILE)
    assert record["reproduces"] == str(model_run.resolve()) and record["status"] == "finished"
    lesion = read.read_json(model_run / runs.ANALYSIS_DIR / "lesion.json")
    assert analysed == 0 and lesion["images"] == 64  # TinyNet's declared blocks, re-analysed
    assert refused == 2  # the exit status of a refused command

    (lines,) = snippets(section(title))
    loaded: dict = {}
    exec(compile(lines.replace("<run>", model_run.name), "extending.md", "exec"), loaded)
    assert type(loaded["trained"].model).__name__ == "TinyNet"
    assert loaded["trained"].metrics["test/acc"] == metrics_of(model_run)["test/acc"]
