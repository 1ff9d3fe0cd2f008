"""``python -m model.backbones.efficientnet_lite convert ...`` (:func:`.convert.main`)."""

import sys

from .convert import main

sys.exit(main())
