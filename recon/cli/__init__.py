"""Command groups of the ``recon`` CLI, one module each (wired together in recon_cli.py)."""
