"""``python -m honeydew``: the operator's command line (``honeydew --help``; :mod:`honeydew.cli`)."""

from .cli import main

raise SystemExit(main())
