"""Allow ``python -m assistant`` as an alias of the ``arena`` console script."""

from assistant.cli.main import main

if __name__ == "__main__":
    raise SystemExit(main())
