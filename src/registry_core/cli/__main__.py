"""``python -m registry_core.cli``: the ``registry-core`` command."""

import sys

from ._main import main

sys.exit(main())
