"""Synthetic markets with known truth, the Monte-Carlo campaign simulator and what-ifs."""
