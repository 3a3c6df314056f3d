"""`python -m minillm COMMAND`: the command line (minillm/cli/, one module per command)."""
import sys

from minillm.cli import build_parser, main
from minillm.cli.options import field_comments

__all__ = ["build_parser", "field_comments", "main"]

if __name__ == "__main__":
    sys.exit(main())
