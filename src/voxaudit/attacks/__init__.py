"""Query-based adversarial attacks on ASR models, to evaluate the guard against.

Every attack talks to its victim through ``voxaudit.models.access.Access``, so every query is
counted and logged; ``QueryTap`` puts a detector (and an adaptive attacker's evasions) in that
query path.
"""
