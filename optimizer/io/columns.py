"""Column names of the files adplan writes: the contract planners' scripts rely on."""

PLAN_COLUMNS = (
    "audience",
    "budget",
    "daily_budget",
    "bid",
    "expected_spend",
    "expected_impressions",
    "expected_clicks",
    "expected_conversions",
    "expected_value",
    "cpa",
    "roas",
    "marginal_cpa",
    "current_spend",
    "current_conversions",
)
SUMMARY_COLUMNS = ("audience", "metric", "mean", "p10", "p50", "p90")
COMPARISON_COLUMNS = (
    "scenario",
    "variant",
    "budget",
    "expected_spend",
    "expected_conversions",
    "expected_value",
    "cpa",
    "roas",
)
FRONTIER_COLUMNS = (
    "budget",
    "expected_spend",
    "expected_conversions",
    "expected_value",
    "cpa",
    "marginal_cpa",
)
