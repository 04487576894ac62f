"""The request id: taken from `X-Request-ID` or made up, echoed back, written to audit entries
(what an id is and where it is kept: `taskflow.core.request_id`; the middleware that does it:
`taskflow.http.edge`).

A frontend (or a proxy) that sends its own id can find the audit entries a request wrote and
the server log lines about it. An id that is not short printable ASCII is replaced rather than
stored, since the audit log keeps it forever.
"""

from __future__ import annotations

from taskflow.core.request_id import HEADER, SCOPE_KEY, accepted_id

__all__ = ["HEADER", "SCOPE_KEY", "accepted_id"]
