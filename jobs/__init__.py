"""Scheduled jobs (nightly reconciliation, intraday sweep). The run body they call is recon.pipeline.run."""
