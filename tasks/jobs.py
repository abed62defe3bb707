"""RQ jobs of the tasks app. They take primary keys only."""

from tasks import execution


def execution_run(execution_id: int) -> str:
    """Run a queued execution. Precondition: the row is `queued`; if not (cancelled, or
    taken by another worker), nothing happens."""
    return execution.run(execution_id)
