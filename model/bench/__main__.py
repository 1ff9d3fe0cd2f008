"""``python -m model.bench ...``: the batch-scoring benchmark (:func:`.score.main`)."""

import sys

from .score import main

sys.exit(main())
