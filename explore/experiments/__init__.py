"""Experiment scripts that reproduce the paper's tables; each writes Markdown + Parquet."""
