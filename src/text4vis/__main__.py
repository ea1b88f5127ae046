"""`python -m text4vis ...` (used with torchrun: `torchrun ... -m text4vis train ...`).

This file is the command line's entry point, not library code: it is the one module outside `cli/` that
imports `text4vis.cli`, because `python -m text4vis` runs it (tests/test_structure.py counts it with the CLI).
"""
import sys

from .cli import main

sys.exit(main())
