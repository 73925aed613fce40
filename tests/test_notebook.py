"""The tutorial notebook (docs/tutorial.ipynb) runs top to bottom, so it never rots."""

import os
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOK = Path(__file__).parents[1] / "docs" / "tutorial.ipynb"


@pytest.mark.slow
def test_the_tutorial_runs_top_to_bottom_through_the_public_api(tmp_path, monkeypatch):
    monkeypatch.setenv("MASKCLS_TUTORIAL_PEOPLE", "24")
    monkeypatch.setenv("MASKCLS_TUTORIAL_EPOCHS", "1")
    monkeypatch.setenv("MASKCLS_TUTORIAL_DIR", str(tmp_path / "tutorial"))
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    NotebookClient(
        notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    ).execute()
    outputs = {index: cell.get("outputs", []) for index, cell in enumerate(notebook.cells) if cell.cell_type == "code"}
    errors = [output for cell in outputs.values() for output in cell if output.get("output_type") == "error"]
    assert errors == []
    text = "\n".join(
        output.get("text", "") or output.get("data", {}).get("text/plain", "")
        for cell in outputs.values()
        for output in cell
    )
    assert "CV macro F1" in text and "held-out check" in text and "private" in text
    assert (tmp_path / "tutorial/runs/tutorial-cv3/calibration.json").exists()
    assert os.path.getsize(tmp_path / "tutorial/submission.csv") > 0
