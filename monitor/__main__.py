"""`python -m monitor` is the `hismon` command."""

from monitor.commands.cli import main

if __name__ == "__main__":
    main()
