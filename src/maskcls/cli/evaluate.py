"""Commands that combine and judge predictions: ensemble, score, calibrate, audit."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from maskcls.cli.options import Calibration, ExplainSplit, Quiet, Track, TrackOptional, Vote, parse_floats
from maskcls.cli.render import (
    ORACLE_ROW,
    calibration_lines,
    leaderboard_table,
    out,
    resampling_note,
    rich_table,
    say,
    uncertainty_cells,
)
from maskcls.errors import UserError
from maskcls.rundir import names


def ensemble(
    inputs: Annotated[list[Path], typer.Argument(help="Probability files, run folders or cv groups.")],
    method: Annotated[Vote, typer.Option(help="soft (mean probabilities) or hard (majority vote).")] = Vote.soft,
    weights: Annotated[str | None, typer.Option(help="Comma-separated weight per input, e.g. 2,1,1.")] = None,
    oof: Annotated[bool, typer.Option(help="Folders mean their out-of-fold / validation probabilities.")] = False,
    out_file: Annotated[Path | None, typer.Option("--out", help="Submission file to write (test inputs).")] = None,
    probabilities: Annotated[Path | None, typer.Option(help="Also write the combined probabilities here.")] = None,
    calibration: Calibration = None,
) -> None:
    """Soft or hard voting across folds and experiments; OOF inputs report the ensemble's CV score."""
    from maskcls.evaluation.calibrate import made_by
    from maskcls.evaluation.ensemble import ensemble as combine
    from maskcls.metrics import summary
    from maskcls.rundir.tables import write_made_record, write_probabilities, write_submission

    if not (out_file or probabilities or oof):
        raise UserError(
            "nothing to write or score: give --out FILE (a submission), --probabilities FILE, or --oof "
            "(the ensemble's out-of-fold score)"
        )
    weight_list = parse_floats(weights, "--weights") if weights else None
    result = combine(inputs, method=method.value, weights=weight_list, oof=oof, calibration=calibration)
    if probabilities:
        write_probabilities(probabilities, result.table)
    if out_file:
        if result.key != "ImageID":
            raise UserError("--out writes a submission: the inputs must be test probabilities (ImageID)")
        write_submission(out_file, result.table["ImageID"], result.classes)
        folders = [path if path.is_dir() else path.parent for path in inputs]
        write_made_record(out_file, folders, *made_by(result.calibration, folders))
        say(f"{out_file}: {len(result.classes)} images, {method.value} vote of {len(inputs)} inputs")
    if "target" in result.table.columns:
        metrics = summary(result.table["target"].to_numpy(), result.classes)
        say(
            f"{method.value} ensemble of {len(inputs)} inputs on {len(result.classes)} out-of-fold images: macro F1 "
            f"{metrics['f1']:.4f}, accuracy {metrics['accuracy']:.4f}"
        )


def score(
    submissions: Annotated[list[Path], typer.Argument(help="Submission files (or test probability files).")],
    truth: Annotated[Path, typer.Option(help="Answers CSV, or a synthetic dataset folder (its truth/eval.csv).")],
    per_class: Annotated[bool, typer.Option(help="Also print the F1 of each of the 18 classes.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the scores as JSON.")] = False,
    track: Track = None,
    track_optional: TrackOptional = False,
) -> None:
    """Validate submissions and print macro F1 / accuracy on public, private and all rows, next to
    the CV F1 of the decisions that made each file (its calibration's held-out F1 where one decided
    it, else the valid / CV F1 of the run or group it came from); where the answers name each photo's
    person, the private F1's 90% interval over people and each file's share of resamples beating
    the first file (put the baseline first)."""
    from maskcls.cli.tracked import follow_tracking
    from maskcls.evaluation.oracle import oracle_score
    from maskcls.evaluation.score import (
        has_intervals,
        score_submissions,
        submission_source,
        truth_file,
        write_score,
    )

    sources = {submission: submission_source(submission) for submission in submissions}
    tracker = follow_tracking(track, track_optional, [folder for folder in sources.values() if folder])
    results = score_submissions(submissions, truth)
    for submission in submissions:
        write_score(submission, results[str(submission)])
        if tracker and sources[submission]:
            tracker.log_score(sources[submission], submission, results[str(submission)])
    oracle = oracle_score(truth_file(truth).parent)
    if as_json:
        out.print_json(json.dumps({**results, **({ORACLE_ROW: oracle} if oracle else {})}))
        return
    out.print(leaderboard_table(results, oracle))
    if oracle:
        low, high = oracle["age_borders"]
        say(
            f"{ORACLE_ROW}: the synthetic set's latent cues read without image noise (masculinity > 0, apparent "
            f"age cut at {low:g}/{high:g}); the share column is the F1 over the oracle's"
        )
    if any(result["calibrated_by"] for result in results.values()):
        say(
            "valid/CV F1 of a calibrated submission: its calibration's out-of-fold F1, each fold decided with the "
            "borders and biases learned on the other folds"
        )
    if has_intervals(results):
        say(resampling_note("the ranking half's people"))
    if per_class:
        from maskcls.labels import class_name

        for name, result in results.items():
            classes = ", ".join(f"{k} {class_name(k)}: {f1:.3f}" for k, f1 in enumerate(result["per_class_f1"]))
            say(f"{name}: {classes}")


def compare(
    sources: Annotated[
        list[Path], typer.Argument(help="cv groups (or out-of-fold CSVs) of one training set; baseline first.")
    ],
) -> None:
    """Out-of-fold macro F1 of each experiment, its 90% interval over the training people, and the
    share of resamples in which it beats the first: which CV gain is real, without hidden answers."""
    from maskcls.evaluation.compare import compare_out_of_fold

    rows = []
    for row in compare_out_of_fold(sources):
        interval, beats = uncertainty_cells(row.interval, row.share_beating_first)
        rows.append(
            {"source": str(row.source), "CV F1": f"{row.f1:.4f}", "90% interval": interval, "beats first": beats}
        )
    out.print(rich_table(rows, list(rows[0])))
    say(f"out-of-fold argmax (no calibration); {resampling_note('the training people')}")


def calibrate(
    source: Annotated[Path, typer.Argument(help="cv group, or an OOF probabilities CSV with target and fold.")],
    out_file: Annotated[Path | None, typer.Option("--out", help="Default GROUP/calibration.json.")] = None,
    track: Track = None,
    track_optional: TrackOptional = False,
) -> None:
    """Age borders (for age-estimating heads) and per-class biases that raise out-of-fold macro F1,
    each checked on held-out folds; for --calibration."""
    from maskcls.cli.tracked import follow_tracking
    from maskcls.evaluation.calibrate import calibrate as fit_calibration
    from maskcls.evaluation.calibrate import default_path

    tracker = follow_tracking(track, track_optional, [source])
    result = fit_calibration(source)
    path = result.write(out_file or default_path(source))
    if tracker:
        tracker.finish_folder(path.parent)
    for line in calibration_lines(path, result):
        say(line)


def audit(
    group: Annotated[Path, typer.Argument(help="cv group (its out-of-fold probabilities are audited).")],
    top: Annotated[int, typer.Option(min=1, help="How many suggestions to show and write.")] = 30,
    out_file: Annotated[Path | None, typer.Option("--out", help="Corrections YAML (default GROUP/audit.yaml).")] = None,
    min_share: Annotated[float, typer.Option(min=0, max=1, help="Share of a person's images that must agree.")] = 0.5,
) -> None:
    """Training labels that are probably wrong: a ranked table and a corrections YAML to review."""
    from maskcls.evaluation.audit import audit as find_suspects
    from maskcls.evaluation.audit import write_corrections

    suggestions = find_suspects(group, min_share=min_share).head(top)
    columns = ["profile", "attribute", "given", "suggested", "score", "evidence"]
    out.print(rich_table(suggestions[columns].to_dict("records"), columns, title=f"{group}: top {top} suspects"))
    path = write_corrections(suggestions, out_file or group / names.AUDIT, str(group))
    say(
        f"{path}: {len(suggestions)} suggested fixes (verified: false); check the photos, then train with "
        f"-o data.corrections={path}"
    )


def explain(
    source: Annotated[Path, typer.Argument(help="Run folder or cv group.")],
    data: Annotated[
        Path | None, typer.Option(help="Dataset folder of its photos (default: the run's data.root).")
    ] = None,
    images: Annotated[int, typer.Option(min=1, help="Photos per row of each contact sheet.")] = 8,
    out_dir: Annotated[Path | None, typer.Option("--out", help="Folder to write (default SOURCE/explain).")] = None,
    layer: Annotated[
        str | None,
        typer.Option(help="Module to read the maps from, e.g. backbone.layer4 (default: the last feature map)."),
    ] = None,
    split: Annotated[ExplainSplit, typer.Option(help="Validation photos (out-of-fold for a group) or test photos.")] = (
        ExplainSplit.valid
    ),
    measure: Annotated[
        int, typer.Option(min=0, help="Validation photos the share-on-the-face measure uses (synthetic sets only).")
    ] = 400,
    quiet: Quiet = False,
) -> None:
    """Class activation maps (Grad-CAM) per head: contact sheets of the most confident right, most
    confident wrong and most uncertain photos, and on a synthetic set the share of each map on the face."""
    from maskcls.experiments.explain import explain as draw_maps
    from maskcls.progress import progress_bar

    with progress_bar("explain", quiet) as progress:
        found = draw_maps(
            source, data, images=images, out=out_dir, layer=layer, split=split.value, measure=measure, progress=progress
        )
    for head, path in found.sheets.items():
        say(f"{path}: {head} head")
    say(
        f"{found.table}: {found.maps} maps at {found.layer}, {found.seconds_per_map * 1000:.1f} ms per map and photo "
        "(photo decoding included)"
    )
    if found.face_share is not None:
        columns = list(found.face_share.columns)
        rows = found.face_share.where(found.face_share.notna(), "").to_dict("records")
        out.print(rich_table(rows, columns, title="share of each map inside the true face box (truth/boxes.csv)"))
