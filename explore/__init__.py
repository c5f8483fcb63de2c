"""The sweep application on top of `onn`: sweep files, Ray Tune + Optuna scheduling, Parquet
results, Altair reports, and the experiment scripts that reproduce the paper's tables."""
