from pathlib import Path

import pytest

from maskcls.data.corrections import load_corrections
from maskcls.data.layout import read_dataset
from maskcls.errors import ConfigError
from tests.helpers import make_layout

SHIPPED = Path(__file__).parent.parent / "configs/corrections/community-unverified.yaml"


def write_fixes(path, text):
    path.write_text(text)
    return path


def test_gender_age_and_swap_fixes(tmp_path):
    root = make_layout(tmp_path / "d", ["000020_female_Asian_50", "001498-1_male_Asian_38"])
    fixes = write_fixes(
        tmp_path / "fix.yaml",
        "fixes:\n"
        "  - {id: '001498-1', gender: female, age: 39}\n"
        "  - {profile: 000020_female_Asian_50, swap_incorrect_normal: true}\n",
    )
    dataset = read_dataset(root, corrections=fixes, strict=True)
    table = dataset.train.set_index(["profile", "stem"])
    assert table.loc[("001498-1_male_Asian_38", "mask1"), "gender"] == 1
    assert table.loc[("001498-1_male_Asian_38", "mask1"), "age"] == 39
    assert table.loc[("000020_female_Asian_50", "incorrect_mask"), "mask"] == 2
    assert table.loc[("000020_female_Asian_50", "normal"), "mask"] == 1
    assert table.loc[("000020_female_Asian_50", "mask1"), "mask"] == 0
    assert dataset.corrections == [
        "001498-1_male_Asian_38: gender -> female, age -> 39",
        "000020_female_Asian_50: swap incorrect_mask/normal",
    ]
    assert (root / "train/images/000020_female_Asian_50/normal.jpg").exists()  # images untouched


def test_unmatched_and_ambiguous_fixes_are_problems(tmp_path):
    root = make_layout(tmp_path / "d", ["003397_female_Asian_20", "003397_male_Asian_21"])
    fixes = write_fixes(tmp_path / "fix.yaml", "fixes:\n  - {id: '003397', gender: male}\n  - {id: '9', age: 3}\n")
    dataset = read_dataset(root, corrections=fixes)
    assert [p.kind for p in dataset.problems] == ["ambiguous_fix", "unmatched_fix"]
    assert "name one with 'profile'" in dataset.problems[0].message
    assert set(dataset.train["gender"]) == {0, 1}  # nothing applied


def test_bad_fix_files(tmp_path):
    with pytest.raises(ConfigError, match="fixes.0.gendr"):
        load_corrections(write_fixes(tmp_path / "a.yaml", "fixes:\n  - {id: '1', gendr: male}\n"))
    with pytest.raises(ConfigError, match="exactly one of"):
        load_corrections(write_fixes(tmp_path / "b.yaml", "fixes:\n  - {gender: male}\n"))
    with pytest.raises(ConfigError, match="must change"):
        load_corrections(write_fixes(tmp_path / "c.yaml", "fixes:\n  - {id: '1'}\n"))


def test_shipped_community_list_is_valid_and_marked_unverified():
    corrections = load_corrections(SHIPPED)
    assert corrections.verified is False
    assert len(corrections.fixes) == 13
    assert sum(fix.swap_incorrect_normal for fix in corrections.fixes) == 3
