"""Scenario files: defaults < file < flags; unknown keys and bad values are named."""

from __future__ import annotations

import pytest

from optimizer.errors import InputError
from optimizer.plan.scenario import Scenario, load_scenario, read_scenario_file


def _write(tmp_path, text):
    path = tmp_path / "s.toml"
    path.write_text(text)
    return path


def test_file_then_flags(tmp_path):
    path = _write(
        tmp_path,
        'name = "x"\nbudget = 100\ndays = 7\n[targets]\nmax_cpa = 20\n[rate_shift]\naud = -0.1\n[bounds.aud]\nmin_spend = 5\n',
    )
    s = load_scenario(path, {"days": 3.0, "budget": None})
    assert (s.name, s.budget, s.days, s.max_cpa) == ("x", 100.0, 3.0, 20.0)
    assert s.rate_shift == {"aud": -0.1} and s.bounds == {"aud": {"min_spend": 5}}
    assert s.auction_type is None  # taken from the model unless given


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("budgett = 5", "unknown key 'budgett'"),
        ('objective = "profit"', "'objective'"),
        ("days = -1", "'days'"),
        ("price_shift = -2", "price_shift"),
        ("[rate_shift]\na = -1.5", "rate_shift"),
        ("[bounds.a]\nmin = 3", "unknown key"),
        ("[bounds.a]\nmin_spend = 9\nmax_spend = 3", "above max_spend"),
        ("remove_audiences = 3", "list of audience names"),
        ("spend_all = 1", "true or false"),
        ("budget = [", "not valid TOML"),
    ],
)
def test_bad_scenarios(tmp_path, text, words):
    with pytest.raises(InputError, match=words) as info:
        load_scenario(_write(tmp_path, text))
    assert "s.toml" in str(info.value)


def test_shipped_scenarios_load():
    from pathlib import Path

    files = sorted(Path("simulations/scenarios").glob("*.toml"))
    for path in files:
        load_scenario(path)


def test_whatif_file_is_laid_over_the_base(tmp_path):
    base = Scenario(name="base", budget=100.0, days=7.0, max_cpa=20.0)
    s = read_scenario_file(_write(tmp_path, "price_shift = 0.1\ndays = 3"), base)
    assert (s.name, s.budget, s.days, s.max_cpa, s.price_shift) == (
        "s",  # the file's name unless it sets one
        100.0,
        3.0,
        20.0,
        0.1,
    )
    with pytest.raises(InputError, match="cannot be read as TOML"):
        read_scenario_file(_write(tmp_path, "budget = ["), base)
    with pytest.raises(InputError, match="unknown key 'budgett'"):
        read_scenario_file(_write(tmp_path, "budgett = 5"), base)
