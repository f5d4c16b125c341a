"""``python -m edgeintel`` runs the command line."""

from edgeintel.cli import main

main()
