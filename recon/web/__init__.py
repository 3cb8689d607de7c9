"""The finance console (``recon serve``): runs, exceptions, downloads, resolve/ignore, repairs, jobs.

Nothing is imported here: ``recon.config`` reads ``recon.web.settings`` and every other command
should not pay for the web framework. The app itself is ``recon.web.app.create_app``.
"""
