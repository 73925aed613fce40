"""Small promises of the file helpers: a missing JSON file names itself, CSV tables are written
atomically, the package says it is typed, a failed fold's message is one line."""

import csv
from importlib.resources import files

import pytest

from maskcls.errors import UserError
from maskcls.experiments.cv import last_line
from maskcls.files import read_json, write_csv_atomic
from maskcls.synth.generate import SynthSpec, generate_dataset


def test_a_missing_json_file_is_named_unless_it_may_be_missing(tmp_path):
    with pytest.raises(UserError, match=r"result\.json: file not found"):
        read_json(tmp_path / "result.json")
    assert read_json(tmp_path / "result.json", missing={}) == {}
    (tmp_path / "result.json").write_text('{"valid_f1": 0.5}')
    assert read_json(tmp_path / "result.json")["valid_f1"] == 0.5


def test_a_csv_table_that_fails_half_way_leaves_the_old_one(tmp_path, monkeypatch):
    path = tmp_path / "truth.csv"
    write_csv_atomic(path, ["a", "b"], [{"a": 1, "b": 2}])

    def fail(self, rows):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(csv.DictWriter, "writerows", fail)
    with pytest.raises(OSError):
        write_csv_atomic(path, ["a", "b"], [{"a": 3, "b": 4}])
    assert path.read_text() == "a,b\n1,2\n" and [p.name for p in tmp_path.iterdir()] == ["truth.csv"]


def test_synth_truth_tables_are_written_atomically(tmp_path, monkeypatch):
    written = []
    import maskcls.synth.generate as generating

    def record(path, columns, rows):
        written.append(f"{path.parent.name}/{path.name}")
        write_csv_atomic(path, columns, rows)

    monkeypatch.setattr(generating, "write_csv_atomic", record)
    generate_dataset(tmp_path / "set", SynthSpec(people=3, eval_people=1, seed=3), workers=1)
    assert {"truth/eval.csv", "truth/boxes.csv", "truth/people.csv", "train/train.csv"} <= set(written)


def test_the_package_is_typed():
    assert (files("maskcls") / "py.typed").is_file()


def test_a_failed_fold_is_named_by_its_last_line():
    assert last_line("Traceback...\nmaskcls: error: train.fold=7 is outside 0..4\n") == "train.fold=7 is outside 0..4"
    assert last_line("") == "no message (see the fold's folder)"
