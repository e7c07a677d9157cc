"""``python -m equivalence``: see :mod:`equivalence.cli`."""
import sys

from .cli import main

sys.exit(main())
