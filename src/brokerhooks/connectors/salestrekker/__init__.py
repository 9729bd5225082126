"""The SalesTrekker GraphQL connector.

``SalesTrekkerClient`` reads a broker's deals, contacts and notes and writes
notes; ``drift.compare`` tells whether a tenant still serves the schema the
client was built for (``schema.graphql``, every field marked seen or GUESS).
"""

from brokerhooks.connectors.salestrekker.cache import WorkflowCache
from brokerhooks.connectors.salestrekker.client import SalesTrekkerClient
from brokerhooks.connectors.salestrekker.errors import (
    ApiKeyRejectedError,
    NotFoundError,
    RequestRejectedError,
    SchemaMismatchError,
)
from brokerhooks.connectors.salestrekker.ratelimit import RateLimits, TokenBucket
from brokerhooks.connectors.salestrekker.tokens import (
    DatabaseTokenStore,
    MemoryTokenStore,
    TokenStore,
)

__all__ = [
    "ApiKeyRejectedError",
    "DatabaseTokenStore",
    "MemoryTokenStore",
    "NotFoundError",
    "RateLimits",
    "RequestRejectedError",
    "SalesTrekkerClient",
    "SchemaMismatchError",
    "TokenBucket",
    "TokenStore",
    "WorkflowCache",
]
