"""Leaderboard entries, validation and rendering."""
