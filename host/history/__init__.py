"""History of a journal: raw frames out and in (JSON Lines), config versions, recompute."""
