"""A SalesTrekker stand-in: GraphQL API, webhooks and faults, in memory.

    simulator = SalesTrekkerSimulator("key", webhook_url="http://.../hooks/...")
    client = SalesTrekkerClient(..., transport=simulator.transport())
    await simulator.move_deal(simulator.DEAL_ID, "6. Approved")
    await simulator.flush()

The demo organisation's ids are in ``seed`` and on the simulator class.
"""

from brokerhooks.simulators.salestrekker import seed
from brokerhooks.simulators.salestrekker.simulator import Faults, SalesTrekkerSimulator
from brokerhooks.simulators.salestrekker.state import SimulatorError, UnknownRecord
from brokerhooks.simulators.salestrekker.webhooks import EVENTS, SentWebhook, Webhook

__all__ = [
    "EVENTS",
    "Faults",
    "SalesTrekkerSimulator",
    "SentWebhook",
    "SimulatorError",
    "UnknownRecord",
    "Webhook",
    "seed",
]
