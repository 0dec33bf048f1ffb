"""Where a stage's work runs under `scale.engine: dask`: the Dask cluster it is handed.

The address is where to run, not what to compute, so it is no param: `DASK_SCHEDULER_ADDRESS`
(the variable Dask itself reads) names a running scheduler; without it the stage starts a
`LocalCluster` of `LOCAL_WORKERS` worker processes on this machine and closes it with the stage.
Only the stage process talks to MLflow; workers compute and return frames, never log.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

from predictflow.base.errors import StageError

if TYPE_CHECKING:
    from distributed import Client

ADDRESS_VARIABLE = "DASK_SCHEDULER_ADDRESS"
LOCAL_WORKERS = 2
CONNECT_TIMEOUT = "20s"


@dataclass(frozen=True)
class Cluster:
    """The client a stage computes through, and what the run records about where it ran."""

    client: Client
    address: str  # the scheduler's address, or "local" for the stage's own LocalCluster
    workers: int

    def tags(self) -> dict[str, str]:
        """Where it ran (the engine and partitions are params, logged with the others)."""
        return {"scale.workers": str(self.workers), "scale.scheduler": self.address}


@contextmanager
def cluster() -> Iterator[Cluster]:
    """A client on the scheduler at `DASK_SCHEDULER_ADDRESS`, else on a fresh `LocalCluster`.

    A scheduler that does not answer is one line naming the address, not a timeout traceback.
    """
    try:
        from distributed import Client, LocalCluster
    except ImportError:
        raise StageError(
            "scale.engine is dask but Dask is not installed: pip install 'predictflow[scale]' "
            "(or set scale.engine: local)"
        ) from None
    address = os.environ.get(ADDRESS_VARIABLE, "").strip()
    # CRITICAL: a worker would log each failed task (a bad part, say) with its traceback; the
    # error itself comes back to the stage, which says it in one line
    quiet = {"silence_logs": logging.CRITICAL}
    logging.getLogger("distributed").setLevel(logging.WARNING)  # not a line per start and stop
    # ...nor a warning per shuffle begun and ended (a routine event that Dask logs as one)
    logging.getLogger("distributed.shuffle").setLevel(logging.ERROR)
    if address:
        try:
            client = Client(address, timeout=CONNECT_TIMEOUT)
        except (OSError, TimeoutError) as err:
            raise StageError(
                f"{ADDRESS_VARIABLE}={address}: no Dask scheduler answers there ({err}); start "
                f"one, or unset {ADDRESS_VARIABLE} to run on a LocalCluster"
            ) from None
        with client:
            yield Cluster(client, address, _workers(client))
        return
    with (
        LocalCluster(
            n_workers=LOCAL_WORKERS,
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,
            # no dashboard, and the scheduler's own HTTP routes on a free loopback port: not
            # Dask's default 8787 on every interface, which a second stage at once would contend
            scheduler_kwargs={"dashboard": False, "dashboard_address": "127.0.0.1:0"},
            **quiet,
        ) as local,
        Client(local) as client,
    ):
        yield Cluster(client, "local", _workers(client))


def _workers(client: Client) -> int:
    """The workers the scheduler has, waiting a while for the first: a scheduler without any
    would take the tasks and never run them."""
    try:
        client.wait_for_workers(1, timeout=CONNECT_TIMEOUT)
    except TimeoutError:
        raise StageError(
            f"the Dask scheduler at {client.scheduler.address} has no workers after "
            f"{CONNECT_TIMEOUT}; start `dask worker {client.scheduler.address}`"
        ) from None
    return len(client.scheduler_info().get("workers", {}))
