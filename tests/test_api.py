"""The public API (``import maskcls``) and the recipes shipped inside the package."""

import subprocess
import sys

import pytest

import maskcls
from maskcls.recipebook import recipe_names, recipes_folder
from tests.helpers import run_cli


def test_import_maskcls_loads_nothing_heavy_until_a_call_needs_it():
    code = "import sys, maskcls; print(sorted(m for m in ('torch', 'pandas', 'maskcls.api') if m in sys.modules))"
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert loaded.strip() == "[]"
    assert set(maskcls.__all__) <= set(dir(maskcls))
    for name in maskcls.__all__:
        assert getattr(maskcls, name) is not None
    with pytest.raises(AttributeError, match="module 'maskcls' has no attribute 'fitt'"):
        maskcls.fitt  # noqa: B018


def test_a_shipped_recipe_by_name_with_shortcuts_and_dotted_settings(tmp_path):
    config = maskcls.load_config("cpu-demo", ["optim.lr=0.01"], data=tmp_path, folds=3, **{"train.epochs": 7})
    assert (config.name, config.model.name, config.optim.lr) == ("cpu-demo", "resnet10t", 0.01)
    assert (config.data.root, config.train.folds, config.train.epochs) == (str(tmp_path), 3, 7)
    assert maskcls.load_config("cpu-demo.yaml").name == "cpu-demo"
    with pytest.raises(maskcls.UserError, match=r"cpu-dem: recipe file not found \(shipped, by name: baseline, "):
        maskcls.load_config("cpu-dem")
    local = tmp_path / "cpu-demo.yaml"
    local.write_text("name: mine\n")
    assert maskcls.load_config(local).name == "mine"  # a file that exists wins over a shipped name


def test_recipes_lists_shows_and_copies_the_shipped_ones(tmp_path, capsys):
    assert recipe_names() == sorted(path.stem for path in recipes_folder().glob("*.yaml"))
    assert {"cpu-demo", "cpu-pretrained", "gpu-resnet50"} <= set(recipe_names())
    code, out, _ = run_cli("recipes", capsys=capsys)
    assert code == 0 and all(f"  {name} " in out for name in recipe_names()) and "  cpu " in out
    code, out, _ = run_cli("recipes", "cpu-demo", capsys=capsys)
    assert code == 0 and out == (recipes_folder() / "cpu-demo.yaml").read_text()
    code, out, _ = run_cli("recipes", "cpu-demo", "--out", str(tmp_path / "mine.yaml"), capsys=capsys)
    assert code == 0 and (tmp_path / "mine.yaml").read_text() == (recipes_folder() / "cpu-demo.yaml").read_text()
    code, _, err = run_cli("recipes", "cpu-demo", "--out", str(tmp_path / "mine.yaml"), capsys=capsys)
    assert code == 2 and f"{tmp_path / 'mine.yaml'}: already exists" in err
    code, _, err = run_cli("recipes", "nope", capsys=capsys)
    assert code == 2 and "no shipped recipe named 'nope'; known: baseline, cpu-demo" in err


def test_the_cli_choices_are_the_librarys():
    from maskcls.choices import DETECTOR_NAMES
    from maskcls.faces.detectors import DETECTORS

    assert sorted(DETECTOR_NAMES) == sorted(DETECTORS.names())
