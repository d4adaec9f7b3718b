"""One training loop for every model family, with hooks for defenses."""
