"""Simulations: known-truth synthetic markets, the Monte-Carlo campaign simulator
and the named what-if scenarios.

``synthetic/`` draws markets and scores plans on their truth; ``simulator/`` replays
a plan auction by auction; ``scenarios/*.toml`` are the shipped what-if files.
"""
