"""Hybrid optical neural networks: metasurface optics, NTKD training, estimators, fabrication.

`onn` is the physics-and-learning library. It never imports `explore`, Ray, Optuna, polars, Altair
or YAML (a test enforces it), so everything here works in a notebook.
"""

__version__ = "0.1.0"
