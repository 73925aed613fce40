"""Damaged run-folder files are named in one line, never a traceback (bench/fault_table.py
applies every fault to a real pipeline; these are the ones that once ended in a traceback)."""

import pytest

from maskcls.errors import UserError
from maskcls.experiments.catalog import find_entries
from maskcls.inference.loading import run_folders


def test_a_json_file_of_garbage_bytes_is_named(tmp_path):
    group = tmp_path / "runs" / "g-cv2"
    group.mkdir(parents=True)
    (group / "group.json").write_text('{"name": "g", "folds": 2, "runs": ["fold0", "fold1"]}')
    (group / "cv.json").write_bytes(b"\x00\x13 not json \xff" * 3)
    with pytest.raises(UserError, match=r"g-cv2/cv.json: not valid JSON \(not UTF-8 text: a damaged file\?\)"):
        find_entries(tmp_path / "runs")


def test_a_cut_group_file_is_named(tmp_path):
    group = tmp_path / "g-cv2"
    group.mkdir()
    (group / "group.json").write_text('{"name": "g", "folds": 2, "ru')
    with pytest.raises(UserError, match=r"g-cv2/group.json: not valid JSON \(Unterminated string"):
        run_folders([group])
