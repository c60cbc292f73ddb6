"""`python -m converter convert|verify|inspect ...`."""

from converter.cli import main

main()
