"""The `odsc-magics` console script: `odsc-magics local ...` runs the local OCI emulator."""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    """Dispatch to a subcommand; returns the process exit code."""
    args = list(sys.argv[1:] if argv is None else argv)
    usage = (
        "usage: odsc-magics {local,lab,dataflow-archive} [options]   (odsc-magics local --help for the emulator's "
        "flags)"
    )
    if not args or args[0] in {"-h", "--help"}:
        print(usage)
        return 0 if args else 2
    command, rest = args[0], args[1:]
    if command == "local":
        from odsc_magics.local.cli import main as local_main

        return local_main(rest)
    if command == "lab":
        from odsc_magics.lab import main as lab_main

        return lab_main(rest)
    if command == "dataflow-archive":
        from odsc_magics.spark.archive import main as archive_main

        return archive_main(rest)
    print(f"odsc-magics: unknown command {command!r}\n{usage}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
