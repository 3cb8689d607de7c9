"""recon: reconcile a shop's orders against its payment channels and explain every cent."""

import os

__version__ = "0.1.0"

# polars allocates through jemalloc, which keeps freed pages for seconds before giving them back. Parsing a
# gigabyte bill frees hundreds of megabytes of temporaries a second, and they stayed resident: importing a
# 5 M-row Alipay bill peaked at 2.2 GB, 1.8 GB with pages given back within 200 ms (1.7 GB at once, but a
# quarter slower). jemalloc reads this once, when polars loads, so recon's entry points import recon before
# anything that imports polars (tests/test_cli.py checks). A setting of the user's own wins.
os.environ.setdefault("_RJEM_MALLOC_CONF", "dirty_decay_ms:200,muzzy_decay_ms:0")
