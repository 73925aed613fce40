import re
from pathlib import Path

import pytest

from maskcls.config import Config, load_config, to_plain_dict
from maskcls.errors import ConfigError


def test_defaults_without_a_file():
    config = load_config()
    assert isinstance(config, Config)
    assert config.data.age_borders == (30, 60)


def test_yaml_then_overrides(tmp_path):
    path = tmp_path / "exp.yaml"
    path.write_text("name: trial\ndata:\n  root: /data\n  strict: false\n")
    config = load_config(path, ["data.strict=true", "data.age_borders=[30, 58]", "seed=7"])
    assert config.name == "trial" and config.data.root == "/data"
    assert config.data.strict is True and config.data.age_borders == (30, 58) and config.seed == 7
    assert to_plain_dict(config)["data"]["age_borders"] == [30, 58]


def test_unknown_key_names_the_closest_valid_one(tmp_path):
    path = tmp_path / "exp.yaml"
    path.write_text("data:\n  corection: fixes.yaml\n")
    with pytest.raises(ConfigError, match=r"unknown key 'data.corection' \(did you mean 'data.corrections'\?\)"):
        load_config(path)


def test_unknown_override_key():
    with pytest.raises(ConfigError, match=r"override 'data.strickt=true': unknown key 'data.strickt'.*data.strict"):
        load_config(None, ["data.strickt=true"])
    with pytest.raises(ConfigError, match="expected KEY=VALUE"):
        load_config(None, ["data.strict"])


def test_bad_values_name_the_field(tmp_path):
    with pytest.raises(ConfigError, match="data.age_borders"):
        load_config(None, ["data.age_borders=[60, 30]"])
    with pytest.raises(ConfigError, match="seed"):
        load_config(None, ["seed=abc"])


def test_bad_yaml_names_the_line(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("name: x\ndata: [unclosed\n")
    with pytest.raises(ConfigError, match="bad.yaml line"):
        load_config(path)
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "missing.yaml")


@pytest.mark.parametrize("recipe", sorted((Path(__file__).parent.parent / "configs").glob("*.yaml")), ids=str)
def test_every_shipped_recipe_is_valid(recipe):
    config = load_config(recipe)
    assert config.name == recipe.stem


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("epochs=1", "override 'epochs=1': unknown key 'epochs' (did you mean 'train.epochs'?)"),
        ("lr=0.1", "override 'lr=0.1': unknown key 'lr' (did you mean 'optim.lr'?)"),
        ("nme=x", "override 'nme=x': unknown key 'nme' (did you mean 'name'?)"),
        ("train.epochs=abc", "override 'train.epochs=abc': train.epochs: Input should be a valid integer"),
    ],
)
def test_override_errors_name_the_override_and_the_full_key(tmp_path, override, message):
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text("train: {epochs: 3}\n")
    with pytest.raises(ConfigError) as error:
        load_config(recipe, [override])
    assert str(error.value).startswith(message)


def test_a_bad_value_in_the_file_is_still_blamed_on_the_file(tmp_path):
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text("train: {epochs: abc}\n")
    with pytest.raises(ConfigError, match=re.escape(f"{recipe}: train.epochs: Input should be a valid integer")):
        load_config(recipe, ["optim.lr=0.1"])


@pytest.mark.parametrize(
    ("override", "message"),
    [
        (
            "optim.name=adamx",
            "optim.name: unknown optimizer 'adamx' (did you mean 'adam'?); known: adam, adamw, madgrad, sgd",
        ),
        (
            "optim.scheduler=cosin",
            "optim.scheduler: unknown scheduler 'cosin' (did you mean 'cosine'?); known: cosine,",
        ),
        ("loss=[{name: focall}]", "loss.0.name: unknown loss 'focall' (did you mean 'focal'?); known: cross_entropy,"),
        (
            "model.age_head=ordinl",
            "model.age_head: Input should be 'classes', 'ordinal', 'regression' or 'distribution'",
        ),
    ],
)
def test_a_misspelt_name_fails_in_the_config_without_importing_torch(override, message):
    import subprocess
    import sys

    code = (
        "import sys\nfrom maskcls.config import load_config\nfrom maskcls.errors import ConfigError\n"
        f"try:\n    load_config(None, [{override!r}])\nexcept ConfigError as error:\n    print(error)\n"
        "print('torch' in sys.modules, 'timm' in sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    shown, imported = done.stdout.strip().splitlines()
    assert shown.startswith(f"override {override!r}: {message}") and imported == "False False"


def test_the_config_knows_every_registered_name():
    from maskcls.config import LOSS_NAMES, OPTIMIZER_NAMES, SCHEDULER_NAMES
    from maskcls.training.losses import LOSSES
    from maskcls.training.optim import OPTIMIZERS, SCHEDULERS

    assert OPTIMIZERS.names() == sorted(OPTIMIZER_NAMES) and SCHEDULERS.names() == sorted(SCHEDULER_NAMES)
    assert LOSSES.names() == sorted(LOSS_NAMES)
