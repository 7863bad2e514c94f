"""`python -m plastic` is the `plastic` command."""

from plastic.cli import main

raise SystemExit(main())
