"""``python -m napari_cycsr.cli``: the ``cycsr`` command (used by torchrun)."""

import sys

from . import main

if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
