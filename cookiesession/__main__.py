"""`python -m cookiesession`: the same command line as `cookiesession`."""

from cookiesession._cli import main

if __name__ == "__main__":
    raise SystemExit(main())
