"""How high an image model can score on the synthetic benchmark: the oracle against the best
reading of the cues a photo actually shows, in expectation and on given sets' private halves.

    .venv/bin/python bench/ceiling.py [DATA-faces ...] [--people 20000] [--difficulty 0.5]

The oracle (``maskcls score``'s ceiling row) reads each person's apparent age and masculinity,
the latent numbers the face is drawn from. A photo shows only the cues drawn from them, each with
noise of its own: wrinkles and greying add noise to the apparent age and are full by about 57
and 60 (an apparent 58 and 64 look alike); jaw, brows, hair and stubble each add noise to the
masculinity. The *cue reader* is the best reading of those drawn cues: gradient boosting from a
person's age cues (wrinkles, grey share) to the age group and from the gender cues to the gender
(the generator draws gender and age independently), fitted on reference people drawn by the same
generator from streams no dataset uses, per-class biases tuned for macro F1 on others, the mask
state always right. No image model reads the cues better than their exact values, so the
reader's F1 is about what is reachable; the oracle's is not. (Not a proof: a better reader of the
same cues could score a little higher; 12,000 and 24,000 reference people give the same F1.)
The *lines reader* reads the age cues as coarsely as a small photo shows them: the grey share and
which age lines are drawn (smile lines, crow's feet, bags, the number of forehead lines), not how
dark the wrinkles make them; where the two part, the lines' shade (a few per cent of the skin's
brightness, one pixel wide at full size) carries the difference. The *grey reader* reads the hair's
grey share alone.

Expected figures are over ``--people`` fresh people (7 photos each, as the sets). Reads a set's
hidden answers: an evaluation of the benchmark, not part of a pipeline.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd

from maskcls.ages import best_borders, groups_of_estimates
from maskcls.evaluation.calibrate import fit_biases
from maskcls.evaluation.oracle import MASKS_PER_PERSON, genders_from_cues, oracle_score
from maskcls.files import read_json
from maskcls.labels import HEAD_SIZES, NUM_CLASSES, age_groups, encode_classes
from maskcls.metrics import macro_f1, summary
from maskcls.synth.draw import CROWS_FEET_FROM, EYE_BAGS_FROM, FOREHEAD_LINES_PER_WRINKLE, SMILE_LINES_FROM
from maskcls.synth.generate import SynthSpec, make_profiles
from maskcls.synth.people import Person, sample_person

REFERENCE_STREAM = 0xCE111  # reference people: [REFERENCE_STREAM, index, part]; a dataset's are [seed, index, 0]
FIT, TUNE, EXPECTED = 0, 1, 2  # the parts of the reference population


def age_cues(person: Person) -> list[float]:
    return [person.wrinkles, person.grey_share]


def drawn_lines(person: Person) -> list[float]:
    """The age cues without the wrinkles' shade: the grey share and which age lines are drawn."""
    lines = [person.wrinkles > SMILE_LINES_FROM, person.wrinkles > CROWS_FEET_FROM, person.wrinkles > EYE_BAGS_FROM]
    return [person.grey_share, int(person.wrinkles * FOREHEAD_LINES_PER_WRINKLE), *map(float, lines)]


def grey_share_only(person: Person) -> list[float]:
    return [person.grey_share]


READERS = {  # name: the age cues it reads (all read the gender cues)
    "cue reader": age_cues,
    "lines reader": drawn_lines,
    "grey reader": grey_share_only,
}


def gender_cues(person: Person) -> list[float]:
    return [person.jaw, person.brow_thickness, person.hair_length, person.stubble, *person.lip_colour]


def reference_people(part: int, count: int, difficulty: float) -> list[Person]:
    return [sample_person(k, np.random.default_rng([REFERENCE_STREAM, k, part]), difficulty) for k in range(count)]


class CueReader:
    """P(gender | gender cues) x P(age group | ``read_age`` cues), and 18 biases for macro F1."""

    def __init__(self, fit: list[Person], tune: list[Person], read_age=age_cues) -> None:
        from sklearn.ensemble import HistGradientBoostingClassifier

        self.read_age = read_age
        self.age = HistGradientBoostingClassifier(max_iter=200, random_state=0)
        self.age.fit(np.array([read_age(p) for p in fit]), age_groups(np.array([p.age for p in fit])))
        self.gender = HistGradientBoostingClassifier(max_iter=200, random_state=0)
        self.gender.fit(np.array([gender_cues(p) for p in fit]), [int(p.gender) for p in fit])
        self.biases = np.zeros(NUM_CLASSES)
        masks, target = photos_of(tune)
        self.biases = fit_biases(self.log_probabilities(np.repeat(tune, len(MASKS_PER_PERSON)), masks), target)

    def log_probabilities(self, photos: list[Person], masks: np.ndarray) -> np.ndarray:
        """18-class log-probabilities of photos (one person per photo): the person's gender x age
        probabilities under the photo's known mask state, nothing elsewhere."""
        ages = self.age.predict_proba(np.array([self.read_age(p) for p in photos]))
        genders = self.gender.predict_proba(np.array([gender_cues(p) for p in photos]))
        table = np.full((len(photos), NUM_CLASSES), -50.0)
        rows = np.arange(len(photos))
        for gender in range(HEAD_SIZES["gender"]):
            for age in range(HEAD_SIZES["age"]):
                columns = encode_classes(masks, np.full(len(masks), gender), np.full(len(masks), age))
                joint = np.clip(genders[:, gender] * ages[:, age], 1e-9, None)
                table[rows, columns] = np.log(joint) + self.biases[columns]
        return table

    def predict(self, photos: list[Person], masks: np.ndarray) -> np.ndarray:
        return self.log_probabilities(photos, masks).argmax(axis=1)


def photos_of(people: list[Person]) -> tuple[np.ndarray, np.ndarray]:
    """Mask states and 18-class answers of the people's 7 photos each."""
    masks = np.tile(MASKS_PER_PERSON, len(people))
    repeat = len(MASKS_PER_PERSON)
    genders = np.repeat([int(p.gender) for p in people], repeat)
    return masks, encode_classes(masks, genders, np.repeat(age_groups(np.array([p.age for p in people])), repeat))


def oracle_classes(people: list[Person], masks: np.ndarray, borders: tuple[float, float]) -> np.ndarray:
    repeat = len(MASKS_PER_PERSON)
    genders = np.repeat(genders_from_cues(np.array([p.masculinity for p in people])), repeat)
    ages = np.repeat(groups_of_estimates(np.array([p.apparent_age for p in people]), borders), repeat)
    return encode_classes(masks, genders, ages)


def expected(readers: dict[str, CueReader], fit: list[Person], people: list[Person]) -> dict[str, dict]:
    """Oracle (borders fitted on the reference people, as on a set's training people) and readers."""
    fit_masks, fit_target = photos_of(fit)
    borders = best_borders(lambda b: macro_f1(fit_target, oracle_classes(fit, fit_masks, b)))
    masks, target = photos_of(people)
    photos = np.repeat(people, len(MASKS_PER_PERSON))
    read = {name: summary(target, reader.predict(photos, masks)) for name, reader in readers.items()}
    return {"oracle": summary(target, oracle_classes(people, masks, borders)), **read}


def set_test_people(data: Path) -> dict[str, Person]:
    """A synthetic set's test people drawn again from its spec (the generator is deterministic)."""
    saved = read_json(data / "truth" / "meta.json")["spec"]
    spec = SynthSpec(**{key: saved[key] for key in ("people", "eval_people", "seed", "difficulty") if key in saved})
    named = {profile.folder: profile.person for profile in make_profiles(spec, "eval")}
    recorded = pd.read_csv(data / "truth" / "people.csv").set_index("person")
    drawn = np.array([p.apparent_age for p in named.values()])
    if not np.allclose(drawn, recorded.loc[list(named), "apparent_age"].to_numpy(), atol=1e-3):
        raise SystemExit(f"{data}: its test people are not what this generator draws from its spec")
    return named


def on_set(readers: dict[str, CueReader], data: Path) -> dict[str, dict]:
    answers = pd.read_csv(data / "truth" / "eval.csv")
    private = (answers["half"] == "private").to_numpy()
    people = set_test_people(data)
    photos = [people[name] for name in answers["person"]]
    truth, masks = answers["ans"].to_numpy()[private], answers["mask"].to_numpy()
    read = {name: summary(truth, reader.predict(photos, masks)[private]) for name, reader in readers.items()}
    return {"oracle": oracle_score(data / "truth")["private"], **read}


def line(name: str, scores: dict, oracle: dict) -> str:
    parts = " ".join(f"{head} {scores[f'f1_{head}']:.4f}" for head in ("mask", "gender", "age"))
    return f"  {name:<12} macro F1 {scores['f1']:.4f} ({scores['f1'] / oracle['f1']:.1%} of the oracle's); {parts}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sets", type=Path, nargs="*", help="synthetic dataset folders (their truth/)")
    parser.add_argument("--people", type=int, default=20_000, help="fresh people for the expected figures")
    parser.add_argument("--reference", type=int, default=12_000, help="reference people the reader is fitted on")
    parser.add_argument("--difficulty", type=float, default=0.5)
    options = parser.parse_args()
    started = time.perf_counter()
    fit = reference_people(FIT, options.reference, options.difficulty)
    tune = reference_people(TUNE, options.reference // 3, options.difficulty)
    readers = {name: CueReader(fit, tune, read_age) for name, read_age in READERS.items()}
    people = reference_people(EXPECTED, options.people, options.difficulty)
    scores = expected(readers, fit, people)
    print(f"expected over {options.people:,} people, difficulty {options.difficulty:g}:")
    for name, result in scores.items():
        print(line(name, result, scores["oracle"]))
    for data in options.sets:
        scores = on_set(readers, data)
        print(f"{data} (private half):")
        for name, result in scores.items():
            print(line(name, result, scores["oracle"]))
    print(f"{time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
