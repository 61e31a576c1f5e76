"""`python -m tfcontrast` runs the command line (see `tfcontrast.cli`)."""

from tfcontrast.cli import run

run()
