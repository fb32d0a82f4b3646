"""Hydra configs of the package (YAML files in this folder); a package so that installs ship them."""

from pathlib import Path

CONF_DIR = str(Path(__file__).resolve().parent)
