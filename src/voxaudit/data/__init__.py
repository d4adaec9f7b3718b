"""Corpora, audio I/O, audit splits, synthesis and the features front-end."""
