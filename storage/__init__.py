"""Storage: tiers, layout, backends, the SQLite catalog and the persist pipeline."""
