import pytest

from builds.models import Build, Image
from builds.services import component_create
from deployments.models import Deployment, Release
from environments.services import project_create
from tasks.services import schedule_sync

TASK_DOCKERFILE = """\
FROM choreo/busybox:1
COPY run.sh /run.sh
ENTRYPOINT ["sh", "/run.sh"]
CMD ["default-argument"]
"""
# Prints its arguments and configuration, then sleeps SLEEP seconds and exits with EXIT.
RUN_SH = """\
echo "args: $*"
echo "greeting: $GREETING"
echo "token: $TOKEN"
[ -n "$SLEEP" ] && sleep "$SLEEP"
exit "${EXIT:-0}"
"""


def task_descriptor(kind: str = "manual-task", schedule: str = "", task: str = "") -> str:
    text = f"schemaVersion: 1\ntype: {kind}\n"
    if schedule:
        text += f"schedule: '{schedule}'\n"
    if task:
        text += f"task: {task}\n"
    return text + (
        "configurations:\n"
        "  - {name: GREETING, type: string, default: hello}\n"
        "  - {name: TOKEN, type: string, secret: true}\n"
        "  - {name: SLEEP, type: string, default: ''}\n"
        "  - {name: EXIT, type: string, default: '0'}\n"
    )


@pytest.fixture
def make_task(make_repo):
    """shop/job: a task component built from busybox, removed with what it runs at the end."""
    from builds.services import component_create
    from environments.models import Project
    from environments.services import project_create

    made = []

    def make(descriptor: str | None = None, name: str = "job", script: str = RUN_SH):
        repo = make_repo({".choreo/component.yaml": descriptor or task_descriptor(), "Dockerfile": TASK_DOCKERFILE, "run.sh": script})
        project = Project.objects.filter(name="shop").first() or project_create(name="shop")
        component = component_create(project=project, name=name, repository=str(repo.path))
        component.repo = repo
        made.append(project)
        return component

    yield make
    from environments.services import project_delete

    for leftover in Project.objects.filter(name="shop"):
        project_delete(project=leftover)


@pytest.fixture
def shop(make_repo):
    """shop/job, a manual-task active in development (rows only); shop/web, a service;
    shop/cron, a scheduled task active in development."""
    project = project_create(name="shop")
    dev = project.environments.get(name="development")
    made = {}
    for name, kind in (("job", "manual-task"), ("web", "service"), ("cron", "scheduled-task")):
        component = component_create(project=project, name=name, repository=str(make_repo().path))
        descriptor = {"schemaVersion": 1, "type": kind, "schedule": "@every 1h" if kind == "scheduled-task" else None, "timezone": "UTC"}
        image = Image.objects.create(component=component, commit="a" * 40, digest="sha256:" + "b" * 64, reference="r", inputs_key=name)
        build = Build.objects.create(component=component, commit="a" * 40, status=Build.SUCCEEDED, image=image, descriptor=descriptor)
        release = Release.objects.create(
            component=component, build=build, image=image, digest=image.digest, image_reference="r", descriptor=descriptor, config_hash="h"
        )
        Deployment.objects.create(component=component, environment=dev, release=release, status=Deployment.ACTIVE, replicas=[])
        component.type = kind
        component.save()
        schedule_sync(component=component, environment=dev)
        made[name] = component
    return made
