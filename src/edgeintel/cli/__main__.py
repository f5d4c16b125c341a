"""``python -m edgeintel.cli`` runs the command line."""

from edgeintel.cli import main

main()
