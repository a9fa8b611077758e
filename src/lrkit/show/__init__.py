"""Showing results: plots (matplotlib, display-free) and progress bars."""
