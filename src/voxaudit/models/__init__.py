"""Built-in speech models and adapters for real ones, behind the small protocols in ``base``."""
