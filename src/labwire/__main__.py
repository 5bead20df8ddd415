"""``python -m labwire``: the command line (see :mod:`labwire.cli`)."""

from labwire.cli import main

raise SystemExit(main())
