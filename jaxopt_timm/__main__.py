"""``python -m jaxopt_timm``: the ``jaxopt-timm`` command line."""

import sys

from jaxopt_timm.cli import main

if __name__ == '__main__':
    sys.exit(main())
