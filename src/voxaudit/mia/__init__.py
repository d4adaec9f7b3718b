"""Membership inference: features, attacks and metrics."""
