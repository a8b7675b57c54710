"""``adplan predict``: score an event log with a trained rate model, write one CSV."""

from __future__ import annotations

from pathlib import Path

from optimizer.errors import InputError
from optimizer.io.atomic import MIN_FREE_BYTES, check_writable
from optimizer.io.files import check_model_folder, write_csv
from optimizer.io.schema import read_event_log, read_table
from optimizer.rates.store import load_rate_model


def write_predictions(model_dir: Path, events: Path, out_file: Path) -> list[str]:
    """Write the log's rows plus p_click, p_conversion, p_conversion_given_click
    to ``out_file``; return summary lines."""
    need = (
        MIN_FREE_BYTES + 2 * Path(events).stat().st_size
        if Path(events).is_file()
        else MIN_FREE_BYTES
    )
    check_writable(out_file, folder=False, need_bytes=need)
    if check_model_folder(model_dir).get("input_kind") == "daily":
        raise InputError(
            f"model {model_dir}: it was trained on a daily report, and {events} is an "
            "auction log. Score the log with a model trained on an auction log, or "
            "score a daily report with this one."
        )
    model = load_rate_model(model_dir)
    frame = read_event_log(events)
    preds = model.predict(frame)
    out = read_table(events, "event log")
    for name in ("p_click", "p_conversion", "p_conversion_given_click"):
        out[name] = preds[name]
    write_csv(out_file, out)
    return [f"Scored {len(out):,} rows -> {out_file}"]
