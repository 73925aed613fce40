"""Synthetic datasets in the competition layout, with the answers kept in ``truth/``."""
