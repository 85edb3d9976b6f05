"""``python -m betasweep.cli``: the same as the ``betasweep`` console script."""

import sys

from betasweep.cli import main

sys.exit(main())
