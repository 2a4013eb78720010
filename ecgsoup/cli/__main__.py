"""``python -m ecgsoup.cli``: the same as the ``ecgsoup`` command."""

import sys

from ecgsoup.cli.parser import main

if __name__ == "__main__":
    sys.exit(main())
