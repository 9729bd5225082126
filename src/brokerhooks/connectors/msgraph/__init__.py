"""Microsoft Graph: tokens with msal, the Graph client, the sign-in callback.

``auth`` gets tokens for a stored connection (delegated sign-in with PKCE,
or app-only) and opens a ``GraphClient`` for it; ``client`` makes the Graph
calls; ``callback`` is the page a browser returns to after sign-in.
"""

from brokerhooks.connectors.msgraph.auth import (
    ConnectionTokens,
    begin_sign_in,
    complete_sign_in,
    graph_client,
    verify_app_only,
)
from brokerhooks.connectors.msgraph.client import GraphClient
from brokerhooks.connectors.msgraph.errors import (
    GraphConflict,
    GraphNotFound,
    GraphRequestError,
    ReconnectRequired,
    SignInFailed,
)
from brokerhooks.connectors.msgraph.resources import (
    EventFields,
    LinkedResource,
    MailMessage,
    Recipient,
    TaskFields,
)

__all__ = [
    "ConnectionTokens",
    "EventFields",
    "GraphClient",
    "GraphConflict",
    "GraphNotFound",
    "GraphRequestError",
    "LinkedResource",
    "MailMessage",
    "Recipient",
    "ReconnectRequired",
    "SignInFailed",
    "TaskFields",
    "begin_sign_in",
    "complete_sign_in",
    "graph_client",
    "verify_app_only",
]
