"""CSV inputs as planners export them: names that look like missing values, and
Excel's semicolon separator with decimal commas."""

from __future__ import annotations

import pandas as pd
import pytest
from click.testing import CliRunner

from optimizer.cli import main
from optimizer.errors import InputError
from optimizer.io.csv_format import use_csv_format
from optimizer.io.schema import read_event_log, read_settings
from optimizer.log.stream import stream_log

NAMES = ["NA", "None", "null", "n/a", "NaN", "books"]


def _log(n: int = 12) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "timestamp": pd.date_range("2026-01-01", periods=n, freq="h").strftime(
                "%Y-%m-%dT%H:%M:%SZ"
            ),
            "audience": (NAMES * n)[:n],
            "bid": [0.0125] * n,
            "won": [1, 0] * (n // 2),
            "cost": [0.0075, 0.0] * (n // 2),
            "click": [1, 0] * (n // 2),
            "conversion": [0, 0] * (n // 2),
            "score": [1.5] * n,
        }
    )


@pytest.fixture(autouse=True)
def _sniffed():
    """Every test starts with the separator and decimal mark detected."""
    use_csv_format()
    yield
    use_csv_format()


def test_audience_names_that_look_missing_are_read_as_text(tmp_path):
    path = tmp_path / "log.csv"
    _log().to_csv(path, index=False)
    events = read_event_log(path)
    assert events["audience"].tolist() == _log()["audience"].tolist()
    streamed = stream_log([path], tmp_path / "spill", chunk_rows=5, progress=False)
    assert set(streamed.totals.auctions) == set(NAMES)
    settings = tmp_path / "audiences.csv"
    settings.write_text("audience,max_spend\nNA,10\nnull,\nNone,5\n")
    out = read_settings(settings, NAMES)
    assert out["audience"].tolist() == ["NA", "null", "None"]
    assert pd.isna(out["max_spend"].iloc[1]) and out["max_spend"].iloc[2] == 5.0


def test_empty_number_cells_are_still_missing(tmp_path):
    path = tmp_path / "log.csv"
    frame = _log()
    frame.loc[3, "bid"] = None
    frame.to_csv(path, index=False)
    with pytest.raises(
        InputError, match=r"'bid' is empty .* 1 row\(s\) \(first at data row 4\)"
    ):
        read_event_log(path)


def test_excel_semicolon_and_decimal_comma_are_detected(tmp_path):
    path = tmp_path / "excel.csv"
    _log().to_csv(path, index=False, sep=";", decimal=",")
    assert "0,0125" in path.read_text()
    events = read_event_log(path)
    assert events["bid"].tolist() == [0.0125] * 12
    assert events["cost"].iloc[0] == 0.0075 and events["score"].iloc[0] == 1.5
    streamed = stream_log([path], tmp_path / "spill", chunk_rows=4, progress=False)
    assert streamed.n_events == 12


def test_csv_options_override_detection(tmp_path):
    path = tmp_path / "excel.csv"
    # Whole-number money only: nothing to sniff a decimal mark from.
    frame = _log().assign(bid=2, cost=[1, 0] * 6, score=3)
    frame.to_csv(path, index=False, sep="|")
    use_csv_format(sep="pipe", decimal=",")
    assert read_event_log(path)["bid"].iloc[0] == 2.0
    use_csv_format(sep=",", decimal=",")
    with pytest.raises(InputError, match="--csv-sep ';'"):
        read_event_log(path)


def test_cli_reads_an_excel_log_with_explicit_options(tmp_path):
    path = tmp_path / "excel.csv"
    _log().to_csv(path, index=False, sep=";", decimal=",")
    args = ["train", "--events", str(path), "--out", str(tmp_path / "m")]
    result = CliRunner().invoke(
        main, [*args, "--bad-rows", "report", "--csv-sep", ";", "--decimal", ","]
    )
    assert result.exit_code == 0, result.output
    assert "12 rows, no bad rows" in result.output
    assert not (tmp_path / "m").exists()


def test_daily_platform_report_is_recognized(tmp_path):
    path = tmp_path / "daily.csv"
    path.write_text(
        "Date;Campaign;Spend;Impressions;Clicks;Conversions\n"
        "2026-01-01;books;12,50;1000;12;1\n"
    )
    result = CliRunner().invoke(
        main, ["train", "--events", str(path), "--out", str(tmp_path / "m")]
    )
    assert result.exit_code == 1
    assert "daily platform report" in result.output
    assert "one row per auction" in result.output and "rename" not in result.output
    assert "Traceback" not in result.output
