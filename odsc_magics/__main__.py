"""`python -m odsc_magics` is the `odsc-magics` console script."""

from odsc_magics.cli import main

raise SystemExit(main())
