"""A local stand-in for every channel's API and bills, on 127.0.0.1, with real signatures.

Used by the tests and the demo. Each channel module under fetchers/sandbox/ serves its own paths;
this package holds the server, the shared record of payments and the switchable faults.
"""

from fetchers.sandbox.server import Fault, Payment, Refund, Sandbox, SandboxRequest, SandboxResponse

__all__ = ["Fault", "Payment", "Refund", "Sandbox", "SandboxRequest", "SandboxResponse"]
