"""Seed 000, day 4: classifiers in NumPy alone, forward and backward written by hand."""
