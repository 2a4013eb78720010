"""The ``ecgsoup`` command line.

One module per sub-command (``embed``, ``evaluate``, ``benchmark``, ``demo``,
``info``, ``models``, ``convert``, ``pretrain``), each with an
``add_parser(sub)`` and a ``run(args)``; ``ecgsoup.cli.parser`` registers
them and ``ecgsoup.cli.common`` holds what they share.  Exit statuses:

* ``0``: done;
* ``2``: a problem the user can fix (nonexistent path, unreadable input,
  unknown model, missing labels column, an ``--out`` that is not an ecgsoup
  store, a store another run is writing, ...), printed as one line, never a
  traceback; also when ``embed`` / ``evaluate`` finished but some records
  could not be embedded (each is listed on stderr and in the store);
* ``130``: interrupted (Ctrl-C): one line, ``interrupted: N of M records
  saved; run the same command again to resume`` for ``embed``, no traceback.
"""

from ecgsoup.cli.common import EXIT_INTERRUPTED, EXIT_OK, EXIT_PARTIAL, EXIT_USAGE, CLIError
from ecgsoup.cli.parser import build_parser, main

__all__ = ["EXIT_INTERRUPTED", "EXIT_OK", "EXIT_PARTIAL", "EXIT_USAGE", "CLIError", "build_parser", "main"]
