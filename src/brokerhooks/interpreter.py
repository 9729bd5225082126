"""How a long-running brokerhooks process sets up the Python interpreter."""

from __future__ import annotations

import gc
import sys

from brokerhooks.config import Settings


def prepare_to_serve(settings: Settings) -> None:
    """Tune the interpreter once start-up is over and serving begins.

    - The switch interval: how long one thread may keep the interpreter while
      another waits. The group writer's thread must get it back as soon as a
      commit returns, not after Python's default 5 ms: the deliveries of that
      batch wait for it.
    - Everything made before serving (modules, the app, table metadata,
      templates) lives as long as the process. The cyclic garbage collector
      would still walk all of it at every full collection, a pause of about
      100 ms in the service's process that every request in flight waited
      out. Frozen, it is left out of collections.
    - Requests make few reference cycles, but each holds containers while it
      waits, and Python collects its youngest generation after every 700
      containers more alive than freed. Under load that was hundreds of
      collections a second that found nothing; ``settings.gc_threshold``
      raises the count.

    Called by ``brokerhooks serve`` and ``brokerhooks worker``, not by
    library or test code that shares its process with other work.
    """
    sys.setswitchinterval(settings.switch_interval_ms / 1000)
    gc.collect()
    gc.freeze()
    _, middle, oldest = gc.get_threshold()
    gc.set_threshold(settings.gc_threshold, middle, oldest)
