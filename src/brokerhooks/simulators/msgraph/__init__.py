"""A Microsoft 365 stand-in: Entra ID sign-in and Graph v1.0, offline.

``MicrosoftGraphSimulator`` serves one tenant: the identity endpoints msal
uses and the Graph endpoints brokerhooks calls (To Do, sendMail, calendar
events, OneDrive with upload sessions), with faults that tests inject.
msal insists on https, so serve it with a certificate from
``make_loopback_certificates`` when msal must reach it.
"""

from brokerhooks.simulators.msgraph.simulator import MicrosoftGraphSimulator
from brokerhooks.simulators.msgraph.state import (
    RecordedRequest,
    RecordedTokenRequest,
    SentMail,
    SentNotification,
    Subscription,
    User,
)
from brokerhooks.simulators.msgraph.tls import (
    LoopbackCertificates,
    make_loopback_certificates,
)

__all__ = [
    "LoopbackCertificates",
    "MicrosoftGraphSimulator",
    "RecordedRequest",
    "RecordedTokenRequest",
    "SentMail",
    "SentNotification",
    "Subscription",
    "User",
    "make_loopback_certificates",
]
