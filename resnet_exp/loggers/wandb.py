"""Weights & Biases (`logger=wandb`): one W&B run per run folder, its files in <run>/wandb/.

    python -m resnet_exp 'logger=[tensorboard,wandb]' 'tags=[baseline]'
    WANDB_MODE=offline python -m resnet_exp logger=wandb    # no account or network: the run
    wandb sync outputs/runs/<run>/wandb/offline-run-*       # is uploaded later, if ever

The W&B run is named by `name` and tagged with `tags`; it gets the curves as they are logged, the
settings as its config, metrics.json's numbers as its summary and the figures as images at the
end. The W&B run ends with the run, so that the next job of an in-process sweep starts its own
(Lightning's WandbLogger leaves it open, and the next one would reuse it). `resume=RUN_DIR`
continues the same W&B run: its id is in run.json.
"""

from __future__ import annotations

from pathlib import Path

from pytorch_lightning.loggers import WandbLogger
from pytorch_lightning.utilities import rank_zero_only

from resnet_exp.core.errors import UserError
from resnet_exp.runs import FIGURES_DIR, RUN_FILE, read
from resnet_exp.runs.extension import Extension, Resumed, RunEnd, RunStart


class Wandb(WandbLogger, Extension):
    """Lightning's WandbLogger writing under `save_dir` (the run folder); `id`: an earlier W&B
    run to continue. Other keyword arguments go to `wandb.init` as Lightning passes them."""

    def __init__(self, project: str, name: str, save_dir: str, tags: list | None = None,
                 id: str | None = None, **kwargs) -> None:
        try:
            import wandb as _  # noqa: F401  (WandbLogger raises a bare ModuleNotFoundError)
        except ImportError:
            raise UserError("logger=wandb needs W&B's client: pip install wandb "
                            "(or pip install -e '.[wandb]')") from None
        super().__init__(project=project, name=name, save_dir=save_dir, id=id,
                         tags=[str(t) for t in tags or []], **kwargs)
        # Lightning always passes `anonymous` (None by default), which wandb 0.31 answers with
        # "The anonymous setting has no effect" on every run
        if self._wandb_init.get("anonymous") is None:
            self._wandb_init.pop("anonymous", None)
        self._place: str | None = None

    @classmethod
    def resume_arguments(cls, resumed: Resumed) -> dict:
        try:
            run_id = read.read_json(resumed.run_dir / RUN_FILE).get("wandb_run_id")
        except (OSError, ValueError):  # an unreadable run.json: a new W&B run
            run_id = None
        return {"id": run_id} if run_id else {}

    def start(self, run: RunStart) -> None:
        if not run.rank_zero:  # other ranks' experiment is a dummy without a run
            return
        from wandb.errors import UsageError

        try:
            experiment = self.experiment
        except UsageError as e:  # no API key, in a process with no terminal to ask for one
            raise UserError(f"logger=wandb: {str(e).rstrip('.')}; or run offline "
                            "(WANDB_MODE=offline) and upload later with `wandb sync`") from None
        run.record.update(wandb_run_id=experiment.id)

    def finish(self, end: RunEnd) -> None:
        self._place = record_final(self, end)

    def finalize(self, status: str) -> None:
        super().finalize(status)
        # a fit or test that raised (Ctrl-C included): its W&B run ends, marked failed; not
        # "finished", which Lightning says before a SLURM requeue that continues the run
        if status == "failed":
            end_run(self, exit_code=1)

    def places(self) -> dict[str, str]:
        return {"W&B run": self._place} if self._place else {}


@rank_zero_only  # other ranks' experiment is a dummy
def record_final(logger: WandbLogger, end: RunEnd) -> str | None:
    """The end of a run in its W&B run: the settings as its config, the numbers not logged
    during the run and the figures as images, metrics.json's numbers as its summary; then the
    W&B run ends. Returns where it is."""
    import wandb

    logger.log_hyperparams(end.settings)
    figures = sorted((end.run_dir / FIGURES_DIR).glob("*.png"))
    logger.log_metrics({**end.final, **{f"figures/{p.stem}": wandb.Image(str(p)) for p in figures}},
                       step=end.trainer.global_step)
    logger.experiment.summary.update(
        {k: v for k, v in end.metrics.items() if isinstance(v, (int, float, str))})
    place = where(logger.experiment)
    end_run(logger)
    return place


def where(experiment) -> str | None:
    """The W&B run's page; for an offline run, the command that uploads it: a resumed run has
    one folder per part, which `--id` uploads as one run, in the order they started. None for
    WANDB_MODE=disabled, which keeps nothing."""
    mode = experiment.settings.mode
    if mode == "disabled":
        return None
    if mode not in ("offline", "dryrun"):
        return experiment.url or experiment.id
    folder = Path(experiment.dir).parent
    parts = sorted(folder.parent.glob(f"offline-run-*-{experiment.id}"))
    if len(parts) < 2:
        return f"offline; upload with: wandb sync {folder}"
    return f"offline; upload with: wandb sync --id {experiment.id} {' '.join(map(str, parts))}"


@rank_zero_only
def end_run(logger: WandbLogger, exit_code: int = 0) -> None:
    """End the logger's W&B run, if it started one (a later logger starts its own), and copy in
    what its folder links to outside the run folder."""
    experiment = logger._experiment
    if experiment is None:
        return
    folder = Path(experiment.dir).parent  # wandb/offline-run-<time>-<id>/ (or run-...)
    experiment.finish(exit_code=exit_code)
    copy_links_out(folder, Path(logger.save_dir))


def copy_links_out(folder: Path, run_dir: Path) -> None:
    """Replace each link under `folder` that leads out of `run_dir` with a copy of its file:
    wandb-core links logs/debug-core.log to its own log in ~/.cache/wandb, and `resume=` refuses
    a run folder with a link out of it (runs/resume.py)."""
    inside = run_dir.resolve()
    if inside not in folder.resolve().parents:  # WANDB_MODE=disabled: a folder of wandb's own
        return
    for path in [p for p in folder.rglob("*") if p.is_symlink()]:
        target = path.resolve()
        if inside in target.parents:
            continue
        path.unlink()
        if target.is_file():
            path.write_bytes(target.read_bytes())
