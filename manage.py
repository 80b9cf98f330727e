#!/usr/bin/env python
"""Django's command-line utility for administrative tasks."""

import os
import sys


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "kgc.settings")
    from django.core.management import execute_from_command_line

    from kgc.config import ConfigError

    try:
        execute_from_command_line(sys.argv)
    except ConfigError as exc:
        # One line naming the variable, not a traceback.
        sys.stderr.write(f"kgc: configuration error: {exc}\n")
        sys.exit(2)


if __name__ == "__main__":
    main()
