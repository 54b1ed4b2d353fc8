"""Batch scoring: archive -> predictions in Parquet, one row per file, none lost."""
