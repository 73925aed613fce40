import numpy as np
import pytest

from maskcls.labels import (
    AgeGroup,
    Gender,
    Mask,
    age_group,
    age_groups,
    class_name,
    decode_class,
    decode_classes,
    encode_class,
    encode_classes,
    mask_from_stem,
)


def test_every_class_round_trips():
    for label in range(18):
        assert encode_class(*decode_class(label)) == label
    labels = np.arange(18)
    assert (encode_classes(*decode_classes(labels)) == labels).all()


def test_class_formula_matches_the_competition():
    assert encode_class(Mask.WEAR, Gender.MALE, AgeGroup.YOUNG) == 0
    assert encode_class(Mask.INCORRECT, Gender.FEMALE, AgeGroup.MIDDLE) == 10
    assert encode_class(Mask.NOT_WEAR, Gender.FEMALE, AgeGroup.OLD) == 17
    assert class_name(7) == "incorrect / male / 30-59"


@pytest.mark.parametrize(("age", "group"), [(18, 0), (29, 0), (30, 1), (59, 1), (60, 2), (75, 2)])
def test_age_groups_at_the_borders(age, group):
    assert age_group(age) == group
    assert age_groups(np.array([age]))[0] == group


def test_moved_age_border_for_training():
    assert age_group(58, borders=(30, 58)) == AgeGroup.OLD
    assert age_group(57, borders=(30, 58)) == AgeGroup.MIDDLE
    assert list(age_groups(np.array([29, 58, 60]), (30, 58))) == [0, 2, 2]
    with pytest.raises(ValueError, match="increasing"):
        age_groups(np.array([1]), (60, 30))


def test_file_stems():
    assert [mask_from_stem(f"mask{k}") for k in range(1, 6)] == [Mask.WEAR] * 5
    assert mask_from_stem("incorrect_mask") == Mask.INCORRECT
    assert mask_from_stem("normal") == Mask.NOT_WEAR
    with pytest.raises(ValueError, match="mask6"):
        mask_from_stem("mask6")


def test_out_of_range_labels_fail():
    with pytest.raises(ValueError):
        decode_class(18)
    with pytest.raises(ValueError):
        encode_class(3, 0, 0)
