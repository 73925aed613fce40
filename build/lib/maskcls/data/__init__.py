"""Reading, correcting, splitting and caching the competition data."""
