"""`python -m greenroom.cli`: the `greenroom` command."""

from greenroom.cli import main

raise SystemExit(main())
