"""RQ jobs of the builds app. They take primary keys only, and call the pipeline."""

from builds import pipeline


def build_run(build_id: int) -> str:
    """Run the build pipeline for a queued build. Precondition: the build row exists and
    is `queued`; if it is not (cancelled, or taken by another worker), nothing happens."""
    return pipeline.run(build_id)


def push_event_process(event_id: int) -> str:
    """Decide on a queued push event: path filter, coalescing, then maybe a build."""
    from builds.models import PushEvent
    from builds.services import push_event_process as process

    event = PushEvent.objects.select_related("component__project").filter(pk=event_id).first()
    if event is None or event.component is None:
        return "missing"
    return process(event=event).outcome


def component_poll_run(component_id: int) -> str:
    """Poll one component's remote branch for a new head commit."""
    from builds.models import Component
    from builds.services import component_poll

    component = Component.objects.select_related("project").filter(pk=component_id).first()
    if component is None or not component.auto_build_on_commit:
        return "skipped"
    event = component_poll(component=component)
    return event.outcome if event else "no new commit"


def registry_collect_run() -> str:
    """Collect the registry's garbage (builds.services.registry_collect)."""
    from builds.services import registry_collect

    return registry_collect()
