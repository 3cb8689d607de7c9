"""recon: reconcile a shop's orders against its payment channels and explain every cent."""

__version__ = "0.1.0"
