"""The HTML report of a ``maskcls tune`` study: how the search went and which parameters mattered.

Optimisation history (every trial's value and the best so far), parameter importances (fANOVA,
Optuna's default), a parallel-coordinates view of the parameters against the value, the
intermediate values that the pruner judged, and the trials table, all inlined like the run
reports.
"""

from __future__ import annotations

import html
import warnings
from pathlib import Path

from maskcls.errors import UserError
from maskcls.experiments.page import STYLE, figure_data_uri
from maskcls.files import read_json
from maskcls.rundir import names
from maskcls.rundir.folders import read_rows

PLOTS = {
    "history": ("Optimisation history", "plot_optimization_history"),
    "importances": ("Parameter importances", "plot_param_importances"),
    "parallel": ("Parallel coordinates", "plot_parallel_coordinate"),
    "intermediate": ("Values reported to the pruner", "plot_intermediate_values"),
}


def load_study_of(folder: Path):
    from maskcls.experiments.tune import import_optuna

    optuna = import_optuna()
    plan = read_json(folder / names.TUNE)
    summary = read_json(folder / names.STUDY_RESULT, missing={})
    url = summary.get("storage") if summary.get("storage", "").startswith("sqlite") else None
    url = url or f"sqlite:///{(folder / names.STUDY_DB).absolute()}"
    try:
        return optuna.load_study(study_name=plan["study"], storage=url)
    except Exception as error:  # no such study, unreachable database
        raise UserError(f"{folder}: cannot read study {plan.get('study')!r} from {url} ({error})") from None


def study_charts(study) -> list[tuple[str, str, str]]:
    """(id, title, data URI or an explanation) for each plot."""
    from optuna.visualization import matplotlib as plots

    charts = []
    for key, (title, function) in PLOTS.items():
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                axis = getattr(plots, function)(study)
            figure = axis.figure if hasattr(axis, "figure") else axis.flat[0].figure
            figure.set_size_inches(9, 4.5)
            figure.tight_layout()
            charts.append((key, title, figure_data_uri(figure)))
        except (ValueError, RuntimeError, ZeroDivisionError) as error:  # e.g. importances need 2 complete trials
            charts.append((key, title, f"not drawn: {error}"))
    return charts


def render_study_report(folder: Path) -> str:
    study = load_study_of(folder)
    summary = read_json(folder / names.STUDY_RESULT, missing={})
    rows = read_rows(folder / names.TRIALS_TABLE)
    name = html.escape(study.study_name)
    trials = summary.get("trials", {})
    headline = {
        "trials": ", ".join(f"{count} {state}" for state, count in trials.items()),
        "epochs spent": str(summary.get("epochs_spent", "-")),
        "share of epochs saved by pruning": f"{summary.get('share_of_epochs_saved', 0):.0%}",
    }
    best = summary.get("best")
    if best:
        headline["best trial"] = f"{best['trial']}: {best['value']:.4f} ({folder / names.BEST_CONFIG})"
    head = "".join(f"<tr><td>{html.escape(k)}</td><td>{html.escape(v)}</td></tr>" for k, v in headline.items())
    sections = []
    for key, title, content in study_charts(study):
        body = (
            f'<img class="chart" id="{key}" alt="{title}" src="{content}">'
            if content.startswith("data:")
            else f'<p id="{key}">{html.escape(content)}</p>'
        )
        sections.append(f"<h2>{title}</h2>{body}")
    columns = list(rows[0]) if rows else []
    table = "".join(
        "<tr>" + "".join(f"<td>{html.escape(str(row[column]))}</td>" for column in columns) + "</tr>" for row in rows
    )
    header = "".join(f"<th>{html.escape(column)}</th>" for column in columns)
    return (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>maskcls study: {name}</title>'
        f"<style>{STYLE} table.trials td, table.trials th {{ padding: 0.1em 0.6em; font-size: 12px; }}</style>"
        f'</head><body><h1>study {name}</h1><table class="headline">{head}</table>{"".join(sections)}'
        f'<h2>Trials</h2><table class="trials" id="trials"><tr>{header}</tr>{table}</table></body></html>\n'
    )
