"""Sphinx configuration for the trio_sio documentation."""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.abspath(".."))

project = "trio_sio"
author = "the trio_sio developers"
copyright = "2026, the trio_sio developers"
release = "0.1.0.dev0"

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinxcontrib_trio",
]
autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_typehints_format = "short"
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_rtype = False
default_role = "py:obj"
nitpicky = False
html_theme = "furo"
html_title = "trio_sio"
exclude_patterns = ["_build"]
suppress_warnings = ["ref.python"]
