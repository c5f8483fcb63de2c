"""`onn` is a library usable in a notebook: it never imports the application or its tools."""

import pkgutil
import subprocess
import sys
from pathlib import Path

import onn

FORBIDDEN = ("explore", "ray", "optuna", "polars", "altair", "yaml", "vl_convert")


def test_onn_imports_no_application_packages():
    modules = [m.name for m in pkgutil.walk_packages(onn.__path__, "onn.")]
    code = ("import importlib, sys\n"
            f"for m in {modules!r}: importlib.import_module(m)\n"
            f"bad = sorted({{n.split('.')[0] for n in sys.modules}} & set({FORBIDDEN!r}))\n"
            "print(','.join(bad))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(onn.__file__).parent.parent)
    assert len(modules) > 20
    assert out.stdout.strip() == "", f"onn imported {out.stdout.strip()}"
