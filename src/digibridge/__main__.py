"""`python -m digibridge` is the `digibridge` command."""

from digibridge.cli import main

main()
