"""Defenses against membership inference: serve-time output wrappers and train-time hooks."""
