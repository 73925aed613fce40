"""Mutation bench: plant plausible bugs one at a time and see whether the tests notice.

    .venv/bin/python bench/mutants.py [--tests-from REV] [--only ID,ID] [--jobs 1]

Each mutant is one exact text replacement in one source file, applied to a temporary copy of
the repository (``src/`` and ``tests/``), then the tests that claim to cover it run there
(``python -m pytest -x``, the copy's ``src`` first on ``PYTHONPATH``, also for the subprocesses
the tests start). A failing test run means the mutant was *killed*; a passing one means it
*survived*: a bug of that kind would reach users unnoticed.

``--tests-from REV`` takes ``tests/`` from another commit (e.g. the tests before a change), so
the same mutants measure old and new tests. Tests that already fail on the unmutated copy are
left out (deselected) for that run, so a test broken for another reason kills nothing.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Mutant:
    name: str
    file: str  # under src/maskcls/
    old: str
    new: str
    tests: tuple[str, ...]  # pytest node ids or files, relative to the repository


def m(name: str, file: str, old: str, new: str, *tests: str) -> Mutant:
    return Mutant(name, file, old, new, tests)


MUTANTS = [
    # metrics
    m(
        "f1-denominator",
        "metrics.py",
        "matrix.sum(axis=0) + matrix.sum(axis=1)",
        "2 * matrix.sum(axis=1)",
        "tests/test_metrics_mixing.py",
    ),
    m(
        "confusion-transposed",
        "metrics.py",
        "truth * classes + predicted",
        "predicted * classes + truth",
        "tests/test_metrics_mixing.py",
        "tests/test_experiments.py::test_report_renders_in_chromium",
    ),
    # losses
    m(
        "focal-gamma-ignored",
        "training/losses.py",
        "(1 - log_pt.exp()) ** self.gamma",
        "(1 - log_pt.exp()) ** 1.0",
        "tests/test_losses.py",
    ),
    m(
        "smoothing-spread",
        "training/losses.py",
        "self.smoothing / (classes - 1)",
        "self.smoothing / classes",
        "tests/test_losses.py",
    ),
    m(
        "symmetric-ce-alpha",
        "training/losses.py",
        "self.alpha * cross_entropy + self.beta * reverse",
        "self.beta * cross_entropy + self.alpha * reverse",
        "tests/test_losses.py",
    ),
    # mixing
    m(
        "cutmix-vertical-weight-1-r",
        "training/mixing.py",
        "return MixedBatch(mixed, targets, targets[order], ratio)",
        "return MixedBatch(mixed, targets, targets[order], 1 - ratio)",
        "tests/test_metrics_mixing.py",
    ),
    m(
        "cutmix-vertical-weight-1",
        "training/mixing.py",
        "return MixedBatch(mixed, targets, targets[order], ratio)",
        "return MixedBatch(mixed, targets, targets[order], 1.0)",
        "tests/test_metrics_mixing.py",
    ),
    m(
        "mixed-loss-b-weight",
        "training/mixing.py",
        "(1 - batch.weight_a) * criterion(",
        "batch.weight_a * criterion(",
        "tests/test_metrics_mixing.py",
    ),
    # split
    m(
        "folds-unstratified",
        "data/split.py",
        "    labels = strata(people)\n    if np.bincount",
        "    labels = np.zeros(len(people), dtype=int)\n    if np.bincount",
        "tests/test_split.py",
    ),
    # transforms
    m(
        "flip-vertical",
        "data/transforms.py",
        "return torch.where(flip, batch.flip(-1), batch)",
        "return torch.where(flip, batch.flip(-2), batch)",
        "tests/test_transforms.py",
    ),
    m(
        "brightness-range",
        "data/transforms.py",
        '"brightness": (0.2, 3.0)',
        '"brightness": (0.5, 3.0)',
        "tests/test_transforms.py",
    ),
    # prediction
    m(
        "tta-flip-vertical",
        "training/engine.py",
        "model(batch.flip(-1))",
        "model(batch.flip(-2))",
        "tests/test_cv_predict.py",
        "tests/test_engine.py",
    ),
    m(
        "tta-flip-dropped",
        "training/engine.py",
        "outputs = (outputs + model.outputs(mirrored)) / 2",
        "outputs = outputs",
        "tests/test_cv_predict.py",
        "tests/test_engine.py",
    ),
    m(
        "onnx-flip-rows",
        "inference/predict.py",
        "mirrored = np.ascontiguousarray(batch[:, :, ::-1])",
        "mirrored = np.ascontiguousarray(batch[:, ::-1])",
        "tests/test_cv_predict.py",
    ),
    m(
        "predict-rows-reversed",
        "inference/predict.py",
        'full[predicted["row"].to_numpy(dtype=int)] = outputs',
        'full[predicted["row"].to_numpy(dtype=int)] = outputs[::-1]',
        "tests/test_cv_predict.py",
    ),
    # ensemble, calibrate, score
    m(
        "hard-vote-ties-by-index",
        "evaluation/ensemble.py",
        "classes = np.where(tied, summed, -np.inf).argmax(axis=1)",
        "classes = votes.argmax(axis=1)",
        "tests/test_ensemble_score.py",
    ),
    m(
        "soft-vote-unweighted",
        "evaluation/ensemble.py",
        "np.tensordot(weights / weights.sum(), stacked, axes=1)",
        "np.tensordot(np.ones_like(weights) / len(weights), stacked, axes=1)",
        "tests/test_ensemble_score.py",
    ),
    m(
        "calibration-bias-sign",
        "evaluation/calibrate.py",
        "heldout[~inside] = (fold_log[~inside] + biases).argmax(axis=1)",
        "heldout[~inside] = (fold_log[~inside] - biases).argmax(axis=1)",
        "tests/test_audit_calibrate_people.py",
    ),
    m(
        "calibration-guard-off",
        "evaluation/calibrate.py",
        "guard_passed = heldout_after > before",
        "guard_passed = True",
        "tests/test_audit_calibrate_people.py",
    ),
    m(
        "score-order-unchecked",
        "evaluation/score.py",
        "    if image_id != expected_id:\n",
        "    if False:\n",
        "tests/test_ensemble_score.py",
    ),
    m(
        "score-class-17-plus-1",
        "evaluation/score.py",
        "if not 0 <= int(answer) < NUM_CLASSES:",
        "if not 0 <= int(answer) <= NUM_CLASSES:",
        "tests/test_ensemble_score.py",
    ),
    # distributed training
    m(
        "ddp-no-gradient-sync",
        "training/loop.py",
        "    if context.enabled:\n        ids =",
        "    if False:\n        ids =",
        "tests/test_distributed.py",
    ),
    m(
        "ddp-every-rank-rank0-shard",
        "training/distributed.py",
        "return order[self.rank : usable : self.world_size]",
        "return order[0 : usable : self.world_size]",
        "tests/test_distributed.py",
    ),
    # serving page and report
    m(
        "serve-bar-half-width",
        "inference/web/index.html",
        "fill.style.width = `${(100 * p).toFixed(1)}%`",
        "fill.style.width = `${(50 * p).toFixed(1)}%`",
        "tests/test_serve.py::test_page_in_chromium_shows_the_three_predictions",
    ),
    m(
        "serve-box-unscaled",
        "inference/web/index.html",
        "context.strokeRect(b[0] * scale, b[1] * scale,",
        "context.strokeRect(b[0], b[1],",
        "tests/test_serve.py::test_page_in_chromium_shows_the_three_predictions",
    ),
    m(
        "serve-photo-undrawn",
        "inference/web/index.html",
        "context.drawImage(image, 0, 0, canvas.width, canvas.height);",
        "",
        "tests/test_serve.py::test_page_in_chromium_shows_the_three_predictions",
    ),
    m(
        "report-gallery-reversed",
        "experiments/report.py",
        'wrong.sort_values("confidence", ascending=False, kind="stable")',
        'wrong.sort_values("confidence", ascending=True, kind="stable")',
        "tests/test_experiments.py",
    ),
    m(
        "report-headline-cv-f1",
        "experiments/report.py",
        '"CV macro F1 (out-of-fold)": number(cv.get("oof_f1")),',
        '"CV macro F1 (out-of-fold)": number(cv.get("fold_f1_mean")),',
        "tests/test_experiments.py",
    ),
    # person vote
    m(
        "people-vote-skips-age",
        "inference/people.py",
        "voted_age[members] = age[members].mean(axis=0)",
        "voted_age[members] = age[members]",
        "tests/test_audit_calibrate_people.py",
    ),
    # synthetic data
    m(
        "synth-gender-invisible",
        "synth/people.py",
        "masculinity = float(np.clip((1.0 if gender == Gender.MALE else -1.0) + rng.normal(0, noise), -2, 2))",
        "masculinity = float(np.clip(rng.normal(0, noise), -2, 2))",
        "tests/test_synth.py",
    ),
    # defects of issue 25, one mutant each: the fix undone
    m(
        "head-weights-not-averaged",
        "training/losses.py",
        "name: [float(np.mean([values[c] for c in classes[by_value[name] == value]])) for value in range(size)]",
        "name: [float(np.sum([values[c] for c in classes[by_value[name] == value]])) for value in range(size)]",
        "tests/test_losses.py",
    ),
    m(
        "tune-ctrl-c-says-resume",
        "experiments/tune.py",
        "count: run the same maskcls tune command again to continue the study",
        "count: continue with maskcls train --resume",
        "tests/test_tune.py::test_ctrl_c_in_a_trial_says_the_study_continues_with_the_same_command",
    ),
    m(
        "machine-keys-in-the-recipe",
        "config.py",
        'MACHINE_KEYS = ("train.device", "train.threads", "train.cache_dir", "data.cache")',
        'MACHINE_KEYS = ("train.threads",)',
        "tests/test_experiments.py::test_machine_settings_are_not_part_of_a_recipe",
    ),
    m(
        "distribution-ages-unclipped",
        "training/age.py",
        "clipped = ages.float().clamp(AGE_MIN, AGE_MAX)",
        "clipped = ages.float()",
        "tests/test_age.py",
    ),
    m(
        "space-log-step-accepted",
        "experiments/space.py",
        "    if log and step != 1:",
        "    if False:",
        "tests/test_tune.py::test_the_space_is_checked_against_the_config_before_anything_trains",
    ),
    m(
        "refused-claims-counted-failed",
        "experiments/tune.py",
        'if not trial.user_attrs.get("skipped"):  # a refused over-budget claim is no trial',
        "if True:",
        "tests/test_tune.py::test_study_bookkeeping_skips_refused_claims_and_counts_each_trials_own_epochs",
    ),
    m(
        "ddp-nan-not-agreed",
        "training/engine.py",
        "if any_rank(not math.isfinite(loss_value), settings.device):",
        "if not math.isfinite(loss_value):",
        "tests/test_distributed.py::test_a_nan_on_one_rank_stops_every_rank_promptly_with_the_message",
    ),
    m(
        "runs-root-two-levels",
        "rundir/folders.py",
        "while folder.parent != folder and any(",
        "while folder.parent != folder and folder.name.startswith('x') and any(",
        "tests/test_cli.py::test_resume_finds_the_runs_folder_of_the_run",
    ),
    m(
        "balanced-over-all-rows",
        "training/prepare.py",
        "counts = np.bincount(labels[rows], minlength=NUM_CLASSES)",
        "counts = np.bincount(labels, minlength=NUM_CLASSES)",
        "tests/test_train.py::test_balanced_sampling_counts_the_training_rows_only",
    ),
    m(
        "bias-guard-sees-all-borders",
        "evaluation/calibrate.py",
        "with_age_borders(probabilities, estimates, borders, scale)\n                for borders, scale",
        "with_age_borders(probabilities, estimates, age.borders, age.scale)\n                for borders, scale",
        "tests/test_age.py::test_the_bias_guard_cuts_each_held_out_fold_at_borders_learned_without_it",
    ),
    m(
        "border-cut-at-border",
        "ages.py",
        "return [float(border) - ROUNDING for border in borders]",
        "return [float(border) for border in borders]",
        "tests/test_age.py",
    ),
    m(
        "name-checked-after-torch",
        "config.py",
        '    name: OptimizerName = "adamw"',
        '    name: str = "adamw"',
        "tests/test_config.py",
    ),
]


def copy_repository(target: Path, tests_from: str | None) -> None:
    shutil.copytree(ROOT / "src", target / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    if tests_from:
        archive = subprocess.run(["git", "-C", str(ROOT), "archive", tests_from, "tests"], check=True,
                                 capture_output=True).stdout  # fmt: skip
        subprocess.run(["tar", "-x", "-C", str(target)], input=archive, check=True)
    else:
        shutil.copytree(ROOT / "tests", target / "tests", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", target / "pyproject.toml")
    if (ROOT / "configs").exists():
        shutil.copytree(ROOT / "configs", target / "configs")


def run_tests(copy: Path, tests: tuple[str, ...], deselect: list[str]) -> subprocess.CompletedProcess:
    environment = {**os.environ, "PYTHONPATH": f"{copy / 'src'}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
                   "HF_HUB_OFFLINE": "1"}  # fmt: skip
    command = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", "-rf", *tests]
    command += [f"--deselect={node}" for node in deselect]
    return subprocess.run(command, cwd=copy, env=environment, capture_output=True, text=True, timeout=900)


def failing_nodes(output: str) -> list[str]:
    return re.findall(r"^FAILED (\S+)", output, flags=re.MULTILINE)


def baseline_failures(copy: Path, tests: tuple[str, ...]) -> list[str]:
    """Tests that fail without any mutant (e.g. old tests of behaviour that changed on purpose)."""
    failures: list[str] = []
    while True:
        done = run_tests(copy, tests, failures)
        if done.returncode == 0:
            return failures
        new = [node for node in failing_nodes(done.stdout) if node not in failures]
        if not new:
            raise RuntimeError(f"baseline of {tests} fails without a FAILED line:\n{done.stdout[-2000:]}")
        failures += new


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tests-from", help="take tests/ from this git revision")
    parser.add_argument("--only", help="comma-separated mutant names")
    args = parser.parse_args()
    chosen = [mutant for mutant in MUTANTS if not args.only or mutant.name in args.only.split(",")]
    for mutant in chosen:  # every mutant applies to today's code, before anything runs
        count = (ROOT / "src" / "maskcls" / mutant.file).read_text().count(mutant.old)
        if count != 1:
            raise SystemExit(f"{mutant.name}: the text to replace occurs {count} times in {mutant.file}")
    with tempfile.TemporaryDirectory() as scratch:
        copy = Path(scratch) / "repo"
        copy_repository(copy, args.tests_from)
        baselines: dict[tuple[str, ...], list[str]] = {}
        killed = 0
        for mutant in chosen:
            if mutant.tests not in baselines:
                baselines[mutant.tests] = baseline_failures(copy, mutant.tests)
            path = copy / "src" / "maskcls" / mutant.file
            original = path.read_text()
            path.write_text(original.replace(mutant.old, mutant.new))
            started = time.perf_counter()
            try:
                done = run_tests(copy, mutant.tests, baselines[mutant.tests])
            finally:
                path.write_text(original)
            verdict = "killed" if done.returncode != 0 else "SURVIVED"
            killed += done.returncode != 0
            by = failing_nodes(done.stdout)[:1]
            print(f"{mutant.name:30} {verdict:9} {time.perf_counter() - started:5.1f} s  {by[0] if by else ''}",
                  flush=True)  # fmt: skip
        for nodes in baselines.values():
            if nodes:
                print(f"left out (fail unmutated): {', '.join(nodes)}")
        print(f"{killed} of {len(chosen)} mutants killed")


if __name__ == "__main__":
    main()
