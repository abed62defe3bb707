"""RQ jobs of the deployments app. They take primary keys only."""

from deployments import rollout


def deployment_rollout(deployment_id: int) -> str:
    """Roll out a pending deployment. Precondition: the row is `pending`; if not (another
    worker took it), nothing happens."""
    return rollout.run(deployment_id)
