"""RQ jobs of the builds app. They take primary keys only, and call the pipeline."""

from builds import pipeline


def build_run(build_id: int) -> str:
    """Run the build pipeline for a queued build. Precondition: the build row exists and
    is `queued`; if it is not (cancelled, or taken by another worker), nothing happens."""
    return pipeline.run(build_id)
