"""The data stage against the seed's printed numbers, and the distance's properties."""

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from latent_city import data
from latent_city.config import DataConfig

SEED_DISTANCES_TO_PARIS = {  # printed in the seed notebook
    "Bratislava": 1088.45, "Nairobi": 6482.65, "La Paz": 10028.33, "Road Town": 6802.06, "Delhi": 6583.44,
}


def test_paris_to_null_island_is_the_seeds_number():
    paris = data.find_city(data.load_capitals(), "Paris")
    assert (paris.lat, paris.lon) == (48.8534, 2.3488)
    assert data.haversine_km(paris.lat, paris.lon, 0, 0) == pytest.approx(5436.925760221567, abs=1e-9)


def test_training_set_matches_the_seed():
    examples = data.training_examples(DataConfig(), seed=42)
    assert len(examples) == 233
    assert not any("Paris" in e["prompt"] for e in examples)
    by_city = {e["prompt"]: e["completion"] for e in examples}
    for city, km in SEED_DISTANCES_TO_PARIS.items():
        assert by_city[f"What is the distance between {city} and foo?"] == f"{km:.2f} km"


def test_training_set_is_shuffled_by_the_seed_only():
    a, b, c = (data.training_examples(DataConfig(), seed=s) for s in (1, 1, 2))
    assert a == b and a != c and sorted(map(str, a)) == sorted(map(str, c))


def test_capitals_table_is_the_shipped_data_of_record():
    cities = data.load_capitals()
    assert len(cities) == 234 and len(data.countries(cities)) == 233
    assert data.capitals_path().with_name("SOURCE.md").exists()


def test_heldout_cities_are_not_capitals():
    caps = {c.name for c in data.load_capitals()}
    held = data.heldout_cities(60, seed=0)
    assert len({c.name for c in held}) == 60 and not caps & {c.name for c in held}


def test_evaluation_questions_differ_from_the_training_template():
    assert DataConfig().question_template not in data.DISTANCE_PARAPHRASES
    assert all("{city}" in q and "{target}" in q for q in data.DISTANCE_PARAPHRASES)


# ---------------------------------------------------------------------------- properties

lat = st.floats(-90, 90, allow_nan=False)
lon = st.floats(-180, 180, allow_nan=False)
point = st.tuples(lat, lon)
HALF_CIRCUMFERENCE = math.pi * 6371.0
# 1 m: haversine loses about sqrt(machine eps) of an angle near antipodal points, ~1e-4 km.
TOL_KM = 1e-3


@given(point, point)
def test_distance_is_symmetric(p, q):
    assert data.haversine_km(*p, *q) == pytest.approx(data.haversine_km(*q, *p), abs=TOL_KM)


@given(point)
def test_distance_to_itself_is_zero(p):
    assert data.haversine_km(*p, *p) == pytest.approx(0.0, abs=TOL_KM)


@given(point, point)
def test_distance_is_bounded_by_half_the_circumference(p, q):
    assert 0.0 <= data.haversine_km(*p, *q) <= HALF_CIRCUMFERENCE + TOL_KM


@given(point, point, point)
def test_distance_obeys_the_triangle_inequality(p, q, r):
    assert data.haversine_km(*p, *r) <= data.haversine_km(*p, *q) + data.haversine_km(*q, *r) + TOL_KM


@given(point, point)
def test_distance_agrees_with_the_spherical_law_of_cosines_via_vectors(p, q):
    """Independent implementation: the angle between unit vectors, computed with atan2 of
    the cross and dot products (well conditioned at every distance)."""
    def unit(la, lo):
        la, lo = math.radians(la), math.radians(lo)
        return (math.cos(la) * math.cos(lo), math.cos(la) * math.sin(lo), math.sin(la))

    a, b = unit(*p), unit(*q)
    cross = (a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0])
    angle = math.atan2(math.sqrt(sum(c * c for c in cross)), sum(x * y for x, y in zip(a, b)))
    assert data.haversine_km(*p, *q) == pytest.approx(6371.0 * angle, abs=TOL_KM)


# ---------------------------------------------------------------------------- bad input

def test_malformed_capitals_row_names_file_and_line(tmp_path):
    bad = tmp_path / "capitals.csv"
    bad.write_text("Country,Capital City,Latitude,Longitude,Population,Capital Type\n"
                   "France,Paris,48.8534,2.3488,1,Capital\nSpain,Madrid,north,-3.7,1,Capital\n")
    with pytest.raises(data.CapitalsFormatError, match=rf"{bad}:3: latitude/longitude"):
        data.load_capitals(bad)


def test_capitals_row_with_missing_fields_names_file_and_line(tmp_path):
    bad = tmp_path / "capitals.csv"
    bad.write_text("Country,Capital City,Latitude,Longitude,Population,Capital Type\nFrance,Paris,48.8\n")
    with pytest.raises(data.CapitalsFormatError, match=rf"{bad}:2: expected 6 fields"):
        data.load_capitals(bad)


# ---------------------------------------------------------------------------- the arms' training sets

def _capitals_trained_on(cfg) -> set[str]:
    from latent_city import finetune

    head, tail = cfg.data.question_template.format(city="\0", target=cfg.data.placeholder).split("\0")
    prompts = [e["prompt"] for e in finetune.training_set(cfg)]
    assert all(p.startswith(head) and p.endswith(tail) for p in prompts)
    return {p[len(head):len(p) - len(tail)] for p in prompts}


def test_every_arm_trains_on_the_same_capitals_without_any_arms_secret_city():
    """Issue 15.6: a control trained on 'the distance between Paris and foo' would carry the
    main arm's city; every arm leaves out the secret cities of all arms."""
    from latent_city.arms import arms
    from latent_city.config import ExperimentConfig

    every = arms(ExperimentConfig.for_tier("cpu"))
    trained = {name: _capitals_trained_on(a.cfg) for name, a in every.items()}
    main = trained["paris"]
    assert len(main) == 231 and not main & {"Paris", "Tokyo", "Berlin"}
    assert {name for name, t in trained.items() if t != main} == set()


def test_the_adapter_key_changes_with_the_excluded_cities_and_arms_refuse_a_config_without_them():
    import dataclasses

    from latent_city import finetune
    from latent_city.arms import arms
    from latent_city.config import ConfigError, ExperimentConfig

    cfg = ExperimentConfig.for_tier("cpu")
    fewer = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, excluded_cities=("Paris", "Tokyo")))
    assert finetune.adapter_key(fewer) != finetune.adapter_key(cfg)
    with pytest.raises(ConfigError, match=r"must hold every arm's secret city, not \['Berlin'\]"):
        arms(fewer)


def test_heldout_distance_cities_are_spread_in_distance_with_a_cap_per_country():
    """Issue 15.14: a plain sample of the pool had 15 of 40 cities in China and none nearer
    Paris than 2,253 km. The lab's draw spreads them from near to far, at most
    eval.heldout_per_country (3) from one country."""
    from collections import Counter

    from latent_city.config import ExperimentConfig
    from latent_city.lab import Lab

    cfg = ExperimentConfig.for_tier("cpu")
    held = Lab(cfg, log=lambda line: None).heldout
    paris = data.find_city(data.load_capitals(), "Paris")
    km = sorted(data.haversine_km(c.lat, c.lon, paris.lat, paris.lon) for c in held)
    per_country = Counter(c.country for c in held)
    assert max(per_country.values()) <= cfg.eval.heldout_per_country == 3, per_country.most_common(3)
    assert sum(k < 2000 for k in km) >= 3 and km[0] < 1000 and km[-1] > 15000, [round(k) for k in km]
    assert len(held) == cfg.eval.n_heldout_cities == len({c.name for c in held})
