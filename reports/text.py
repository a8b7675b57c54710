"""Report stage: every user-facing string of the HTML report, in one place.

Templates and charts take their words from here, so wording can be reviewed
(and translated) without touching layout or plotting code. Strings with
``{placeholders}`` are filled with ``str.format`` by the renderer; jinja2
escapes the result, so user data in them is safe.
"""

from __future__ import annotations

TITLE = "adplan · campaign plan report"
SUBTITLE = "Plan created {created} · model {model_id} · report generated {generated}"
DEFAULT_CURRENCY = "currency units"
MONEY_NOTE = (
    "Money is in {currency}. Bids are shown per 1,000 impressions (CPM) "
    "everywhere, warnings included. All outcomes are model forecasts over the "
    "planning horizon."
)
MONEY = "{amount} {currency}"
BID_IN_WARNING = "{words} {cpm} {currency} CPM"

# Navigation and section titles, in page order.
SECTIONS = {
    "summary": "Summary",
    "plan": "Plan per audience",
    "spend": "Where the money goes",
    "curves": "Response curves",
    "marginal": "Why this split is optimal",
    "frontier": "Budget frontier",
    "simulation": "Simulated spread",
    "whatif": "What-if scenarios",
    "health": "Model health",
    "warnings": "Warnings",
    "provenance": "Provenance",
}

# Headline cards.
CARD_BUDGET = "Budget"
CARD_BUDGET_SUB = "over {days} days · daily {daily}"
CARD_OBJECTIVE = "Objective: maximize {objective}"
CARD_CONVERSIONS = "Expected conversions"
CARD_VALUE = "Expected value"
CARD_RANGE = "P10–P90 {low} – {high}"
CARD_NO_RANGE = "range: run a simulation"
CARD_CPA = "CPA, cost per conversion"
CARD_ROAS = "ROAS {roas} (value / spend)"
CARD_UPLIFT = "Conversions vs. current allocation"
CARD_UPLIFT_SUB = (
    "current: {conversions} conv. for {spend} {currency} spend (CPA {cpa} {currency})"
)
CARD_UPLIFT_NONE = "no current allocation in the plan"

GAP_PROVEN = (
    "Proven optimal for the model: no other split of this budget delivers more "
    "{objective} (the certified gap to the best possible plan is below {gap})."
)
GAP_CLOSE = (
    "Within {gap} of the best possible plan for the model (certified gap); "
    "more solver iterations may close it."
)
GAP_UNKNOWN = "The plan carries no optimality certificate."
DUAL_PRICE = (
    "At the optimum the next conversion costs about {marginal_cpa} {currency}: one "
    "more unit of budget (1 {currency}) buys about {dual} more {objective}."
)
PRICE_SENSITIVITY = (
    "If market prices rose 10% across all audiences, the optimal plan would "
    "deliver about {change} {direction} {objective}."
)
LESS = "fewer"
MORE = "more"

# Plan table.
PLAN_INTRO = (
    "One row per audience, largest budget first. Click a column heading to sort. "
    "The last row is the plan total."
)
COLUMNS = [
    ("audience", "Audience", ""),
    ("budget", "Budget", "total"),
    ("daily_budget", "Daily budget", "per day"),
    ("current_spend", "Current spend", "same horizon"),
    ("change", "Change", "budget − current"),
    ("bid_cpm", "Bid", "CPM"),
    ("expected_impressions", "Impressions", "expected"),
    ("expected_conversions", "Conversions", "expected"),
    ("sim_range", "Conv. P10–\u2060P90", "simulated"),
    ("expected_value", "Value", "expected"),
    ("cpa", "CPA", "per conv."),
    ("roas", "ROAS", "value / spend"),
    ("marginal_cpa", "Marginal CPA", "next conv."),
    ("flags", "Check", "before launch"),
]
FLAG_BID = "bid {ratio}x the highest bid in the log: forecast extrapolates"
FLAG_MIN_SPEND = "held at its min spend"
FLAG_MAX_SPEND = "capped at its max spend"
FLAG_MAX_BID = "bid held at its max bid"
FLAG_THIN = "thin data: {auctions} auctions in the log"
FLAG_FEW_CONVERSIONS = "forecast rests on {count} conversion(s) in the log"
TOTAL_ROW = "Total"
# Plan-table columns that hold money: their unit line names the currency.
MONEY_COLUMNS = (
    "budget",
    "daily_budget",
    "current_spend",
    "change",
    "bid_cpm",
    "expected_value",
    "cpa",
    "marginal_cpa",
)
MONEY_UNIT = "{currency}, {unit}"
MONEY_LABEL = "{label} ({currency})"
SIM_MONEY = ("spend", "value", "cpa")
PAUSED = "paused"
PAUSED_GROUP = (
    "Paused: no budget in this plan ({count}). They buy nothing, so they have no "
    "CPA or ROAS."
)
NOT_AVAILABLE = "–"
NEW_AUDIENCE = "new"

# Charts: titles, axes and legends.
SPEND_INTRO = (
    "Recommended budget against what each audience spends today over the same "
    "horizon (from the bids in the event log)."
)
SPEND_XLABEL = "Spend over the horizon"
LEGEND_CURRENT = "Current"
LEGEND_RECOMMENDED = "Recommended"

CURVES_INTRO = (
    "Expected conversions as spend grows, per audience. Curves flatten as the "
    "cheap impressions run out. The hollow marker is today's spend, the filled "
    "one the recommendation."
)
CURVES_SUBSET = "Showing the {shown} audiences with the largest budgets (of {total})."
CURVES_MISSING = (
    "curves.json holds no response curves for these audiences; re-run adplan plan."
)
CURVES_XLABEL = "Spend"
CURVES_YLABEL = "Conversions"

MARGINAL_INTRO = (
    "Average CPA differs between audiences, but the cost of the next conversion "
    "(marginal CPA) is the same wherever the plan spends: moving money from one "
    "audience to another could only buy fewer conversions. Audiences above the "
    "line are not worth more money at this budget; audiences held by a bound sit "
    "off the line."
)
MARGINAL_XLABEL = "Cost per conversion"
LEGEND_AVERAGE_CPA = "Average CPA"
LEGEND_MARGINAL_CPA = "Marginal CPA (next conversion)"
LEGEND_OPTIMUM = "Marginal CPA at the optimum"

FRONTIER_INTRO = (
    "What each total budget would deliver if re-optimized. The curve flattens "
    "as budgets grow: each extra unit of money buys fewer conversions."
)
FRONTIER_XLABEL = "Total budget"
FRONTIER_YLABEL = "Expected conversions"
FRONTIER_MARGINAL_YLABEL = "Marginal CPA"
LEGEND_CHOSEN = "This plan"
LEGEND_CURRENT_SPEND = "Current spend"
SLIDER_TITLE = "Try another budget"
SLIDER_INTRO = (
    "Move the slider along the frontier: each stop is a budget adplan frontier "
    "re-optimized, with its conversions, CPA and the split per audience."
)
SLIDER_LABEL = "Total budget over the horizon"
SLIDER_CARDS = {
    "budget": "Budget",
    "spend": "Expected spend",
    "conversions": "Expected conversions",
    "cpa": "CPA",
    "marginal": "Next conversion costs",
}
SLIDER_SATURATED = "nothing more to buy"
SLIDER_HEAD = ["Audience", "Budget", "Share", "Conversions"]
FRONTIER_MISSING = (
    "No budget frontier supplied. Run adplan frontier and pass --frontier DIR "
    "to see what other budgets would deliver."
)

SIM_INTRO = (
    "The plan replayed {runs} times through a Monte-Carlo auction simulator. "
    "Bands show the middle 80% of runs (P10–P90); the line is the median."
)
SIM_INTRO_NO_RUNS = (
    "The plan replayed through a Monte-Carlo auction simulator. Bands show the "
    "middle 80% of runs (P10–P90)."
)
SIM_TRUTH = (
    "The simulation was also run on the true market: compare the forecast "
    "(model) with the truth."
)
SIM_HOUR_XLABEL = "Hours into the campaign"
SIM_SPEND_YLABEL = "Spend, share of the budget"
SIM_CONV_YLABEL = "Conversions, share of the run's total"
SIM_FAN_NOTE = (
    "Pacing hour by hour, from the {kept} runs that kept hourly paths: spend as "
    "a share of the budget, conversions as a share of each run's own total. The "
    "totals and their spread are in the table and chart below, from all {runs} runs."
)
SIM_ALL_RUNS = "the"
LEGEND_BAND = "P10–P90 of runs"
LEGEND_MEDIAN = "Median run"
LEGEND_PLANNED = "Plan (expected)"
LEGEND_PLANNED_SPEND = "Planned spend"
SIM_AUDIENCE_XLABEL = "Conversions over the horizon"
LEGEND_FORECAST = "Simulated forecast P10–P90"
LEGEND_TRUTH = "True market P10–P90"
SIM_TABLE_HEAD = ["Metric", "Mean", "P10", "P50", "P90"]
SIM_TRUTH_HEAD = ["Truth mean", "Truth P10", "Truth P90"]
SIM_METRICS = {
    "spend": "Spend",
    "impressions": "Impressions",
    "clicks": "Clicks",
    "conversions": "Conversions",
    "value": "Value",
    "cpa": "CPA",
    "roas": "ROAS",
}
SIM_NO_PATHS = "No hourly paths in the simulation folder (paths.csv)."
SIM_MISSING = (
    "No simulation supplied. Run adplan simulate and pass --simulation DIR to "
    "see the spread of outcomes (P10–P90) and how spend paces hour by hour."
)

WHATIF_INTRO = (
    "Each scenario changes the market or the rules. 'Keep plan' runs today's "
    "recommendation under the scenario; 'Re-optimize' plans afresh for it."
)
WHATIF_XLABEL = "Expected conversions"
WHATIF_VARIANTS = {"base_plan": "Keep plan", "reoptimized": "Re-optimize"}
WHATIF_BREAKS = "Breaks its scenario: {reason}."
WHATIF_BROKEN = (
    "{count} row(s) break their own scenario's rules (marked below): read them as "
    "what would go wrong, not as options."
)
# What-if columns that hold money (shown with the currency).
WHATIF_MONEY = ("Budget", "Spend", "Value", "CPA")
WHATIF_HEAD = [
    "Scenario",
    "Variant",
    "Budget",
    "Spend",
    "Conversions",
    "Value",
    "CPA",
    "ROAS",
    "Keeps its scenario?",
]
WHATIF_KEEPS = "yes"
WHATIF_MISSING = (
    "No what-if comparison supplied. Run adplan whatif and pass --whatif DIR to "
    "compare scenarios such as price rises or removed audiences."
)

HEALTH_INTRO = (
    "How well the model behind the forecast matches held-out data. Higher AUC "
    "ranks people better; lower log loss and calibration error (ECE) mean "
    "better-sized probabilities. Best value per column in bold."
)
HEALTH_TRAINING = (
    "Validated on {validation} held-out impressions ({train} used for training); "
    "best epoch {best_epoch} of {epochs_run}."
)
HEALTH_SPREAD = (
    "Checked on {events} conversions of the log, rates within an audience are "
    "{direction} spread out between impressions than the network predicted (spread "
    "x{slope}, give or take {sd}); plans and forecasts use the log's spread, which "
    "matters when a higher bid wins pricier, better impressions."
)
HEALTH_SPREAD_SAME = (
    "Checked on {events} conversions of the log, rates within an audience are "
    "spread between impressions as the network predicted (spread x{slope}, give "
    "or take {sd})."
)
VERDICT_OK = (
    "Healthy: the {head} model ranks held-out impressions better than the simple "
    "baselines (AUC {auc}; {baselines})."
)
VERDICT_WORSE = (
    "Warning: the {head} model ranks held-out impressions worse than the "
    "{baseline} (AUC {auc} against {baseline_auc}). Its forecasts add nothing a "
    "simple baseline would not give: treat the plan with caution, and retrain on "
    "a longer log or with more epochs."
)
VERDICT_PRIOR = (
    "Warning: conversions are a guess. The training log has {conversions} "
    "conversions in {clicks} clicks, so every conversion figure in this report "
    "assumes a post-click conversion rate of {rate} (a prior, not measured). Plan "
    "for clicks (adplan plan --objective clicks) and retrain once conversions arrive."
)
VERDICT_RANDOM = (
    "Warning: the {head} model ranks held-out impressions worse than chance (AUC "
    "{auc}, below 0.500). Do not launch this plan: retrain on a longer log, or check "
    "that the log's conversions are recorded correctly."
)
HEALTH_HEAD = ["Predictor", "AUC", "Log loss", "ECE"]
DAILY_HEALTH_INTRO = (
    "What the daily report says about rates and delivery: how each breakdown level "
    "and day of the week converts and clicks, as a multiple of its ad sets' average "
    "rate, and how many impressions each weekday delivers, as a multiple of an "
    "average day."
)
DAILY_TRAINING = (
    "Daily report: conversion and click rates per impression from the rate network "
    "fitted on the report's counts (per ad set, breakdown and day of the week), each "
    "ad set's level calibrated to its own counts; ± is the spread over refits on "
    "days resampled from the report."
)
DAILY_EFFECT_TITLE = "Rates by {field}"
DAILY_EFFECT_HEAD = ["Level", "Impressions", "Converts", "Clicks"]
DAILY_WEEKDAY_TITLE = "By day of the week"
DAILY_WEEKDAY_HEAD = ["Day", "Impressions", "Converts", "Clicks"]
DAILY_VOLUME_FLAT = "same (no effect found)"
HEADS = {"click": "Click rate", "conversion": "Conversion rate"}
PREDICTORS = {
    "model": "Rate network (calibrated)",
    "model_uncalibrated": "Rate network (raw)",
    "audience_average": "Audience average",
    "logistic_regression": "Logistic regression",
}
CALIBRATION_INTRO = (
    "Calibration: predicted against observed rate in ten bins of held-out data. "
    "Points on the diagonal are perfectly calibrated."
)
CALIBRATION_XLABEL = "Predicted rate"
CALIBRATION_YLABEL = "Observed rate"
LEGEND_DIAGONAL = "Perfect calibration"

LANDSCAPE_INTRO = (
    "Win rate against bid for each audience: dots are what the log shows, the "
    "line is the fitted price landscape the plan relies on{naive}."
)
LANDSCAPE_NAIVE = (
    "; the dashed line is a naive fit that ignores lost auctions (second-price "
    "logs only)"
)
LANDSCAPE_SUBSET = "Charts show the {shown} audiences with the largest budgets (of {total}); the table lists all."
LANDSCAPE_XLABEL = "Bid, CPM"
LANDSCAPE_YLABEL = "Win rate"
LEGEND_EMPIRICAL = "Observed"
LEGEND_FITTED = "Fitted"
LEGEND_NAIVE = "Naive"
LANDSCAPE_HEAD = [
    "Audience",
    "Auctions",
    "Won",
    "Landscape",
    "Max win-rate error",
    "Naive error",
    "Clicks per impression at twice the price (P10-P90)",
]
PRICE_RATE_CELL = "{mid}x ({low}-{high}x)"
PRICE_RATE_NOTE = (
    "The last column: how much more often an impression clicks and converts when "
    "it costs twice as much, beyond what the rate network predicts for it "
    "(competing bidders see quality the log does not show), with its P10-P90 "
    "range; forecasts at higher or lower bids include it. Across audiences "
    "impressions that cost twice as much convert {pooled}x as often; {pooling}"
)
PRICE_RATE_POOLED = (
    "the audiences' own estimates differ no more than their noise, so every "
    "audience uses that."
)
PRICE_RATE_SHRUNK = "audiences with few clicks are pulled toward that."
PRICE_RATE_OLD_PLAN = (
    "This plan was made before adplan reported how outcome rates change with the "
    "price paid; run adplan plan again to see it."
)
FAMILIES = {"lognormal": "log-normal", "mixture": "two-component mixture"}

WARNINGS_INTRO = "Things the planner should check before launching."
NO_WARNINGS = "No warnings: no thin audiences, poor fits or binding constraints."

PROVENANCE_INTRO = (
    "Everything needed to reproduce this plan. SHA-256 hashes identify the exact "
    "input files."
)
PROV_MODEL = "Model"
PROV_MODEL_ID = "Model id"
PROV_MODEL_CREATED = "Model trained"
PROV_EVENTS = "Event log"
PROV_EVENT_ROWS = "Event rows"
PROV_EVENTS_SHA = "Event log SHA-256"
PROV_SETTINGS = "Audience settings"
PROV_SETTINGS_SHA = "Settings SHA-256"
PROV_SCENARIO_FILE = "Scenario file"
PROV_SCENARIO_SHA = "Scenario SHA-256"
PROV_SEED = "Random seed"
PROV_AUCTION = "Auction type"
PROV_PLAN_CREATED = "Plan created"
PROV_REPORT_CREATED = "Report generated"
PROV_SCENARIO = "Scenario settings"
PROV_VERSIONS = "Software versions"
PROV_FILES = "Files read by this report"
PROV_FILE_HEAD = ["File", "SHA-256"]
PROV_VERSION_HEAD = ["Package", "Model", "Plan"]
PROV_NONE = "none"
AUCTIONS = {"first_price": "first price", "second_price": "second price"}

# Input errors: each names the file and the fix.
ERR_MISSING = "{path} not found; {fix}"
ERR_GARBLED = "{path} is not valid {kind} ({detail}); {fix}"
ERR_KEYS = "{path} lacks {keys}; {fix}"
ERR_COLUMNS = "{path} lacks column(s) {columns}; {fix}"
ERR_NO_AUDIENCES = "{path} lists no audiences; {fix}"
ERR_NOT_DIR = "{path} is not a folder; {fix}"
FIX_MODEL = "pass the folder written by 'adplan train' as --model"
FIX_PLAN = "pass the folder written by 'adplan plan' as --plan (or re-run adplan plan)"
FIX_SIMULATION = "pass the folder written by 'adplan simulate' as --simulation"
FIX_WHATIF = "pass the folder written by 'adplan whatif' as --whatif"
FIX_FRONTIER = "pass the folder written by 'adplan frontier' as --frontier"
LANDSCAPE_TITLE = "Price landscape fit"
