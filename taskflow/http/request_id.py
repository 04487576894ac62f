"""The request ids: the server's own, and the client's `X-Request-ID` kept beside it (what they
are and where they are kept: `taskflow.core.request_id`; the middleware that does it:
`taskflow.http.edge`).

A frontend (or a proxy) that sends its own id finds it again in `X-Client-Request-ID` and on
the audit entries the request wrote (`client_request_id`), next to the server's id. An id that
is not short printable ASCII is dropped rather than stored, since the audit log keeps it forever.
"""

from __future__ import annotations

from taskflow.core.request_id import CLIENT_HEADER, HEADER, SCOPE_KEY, accepted_id

__all__ = ["CLIENT_HEADER", "HEADER", "SCOPE_KEY", "accepted_id"]
