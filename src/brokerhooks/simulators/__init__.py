"""Local stand-ins for the outside systems, for demos and tests.

Each simulator serves the same HTTP API as the real system (as far as it is
known) from in-memory state, sends the webhooks the real system would send,
and takes faults on request: latency, errors, expired tokens, a changed
schema. Tests use them as fakes; ``brokerhooks simulators ...`` runs them
for a demo.
"""
