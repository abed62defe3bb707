"""RQ jobs of the builds app. They take primary keys only, and call the pipeline.

Each says who acts for the audit trail: what a push delivery causes is the `webhook`'s
doing, what a poll causes the `schedule`'s (choreo_site.audit)."""

from builds import pipeline
from choreo_site import audit

# Who a build's own consequences (its auto deploy) are recorded as, by its trigger.
TRIGGER_ACTORS = {"webhook": ("webhook", "webhook"), "poll": ("schedule", "schedule")}


def build_run(build_id: int) -> str:
    """Run the build pipeline for a queued build. Precondition: the build row exists and
    is `queued`; if it is not (cancelled, or taken by another worker), nothing happens."""
    from builds.models import Build

    trigger = Build.objects.filter(pk=build_id).values_list("trigger", flat=True).first()
    with audit.acting(*TRIGGER_ACTORS.get(trigger, ("system", "system"))):
        return pipeline.run(build_id)


def push_event_process(event_id: int) -> str:
    """Decide on a queued push event: path filter, coalescing, then maybe a build."""
    from builds.models import PushEvent
    from builds.services import push_event_process as process

    event = PushEvent.objects.select_related("component__project").filter(pk=event_id).first()
    if event is None or event.component is None:
        return "missing"
    with audit.acting("webhook", "webhook"):
        return process(event=event).outcome


def component_poll_run(component_id: int) -> str:
    """Poll one component's remote branch for a new head commit."""
    from builds.models import Component
    from builds.services import component_poll

    component = Component.objects.select_related("project").filter(pk=component_id).first()
    if component is None or not component.auto_build_on_commit:
        return "skipped"
    with audit.acting("schedule", "schedule"):
        event = component_poll(component=component)
    return event.outcome if event else "no new commit"


def registry_collect_run() -> str:
    """Collect the registry's garbage (builds.services.registry_collect)."""
    from builds.services import registry_collect

    return registry_collect()
