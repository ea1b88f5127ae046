"""`python -m text4vis ...` (used with torchrun: `torchrun ... -m text4vis train ...`)."""
import sys

from .cli import main

sys.exit(main())
