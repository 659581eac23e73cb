"""`python -m torswitch` is the `torswitch` command."""

from torswitch.cli import main

raise SystemExit(main())
