from django.apps import AppConfig


class DeploymentsConfig(AppConfig):
    name = "deployments"

    def ready(self) -> None:
        from builds.pipeline import register_success_hook
        from builds.services import register_component_teardown
        from choreo_site import housekeeping, runs
        from deployments import rollout
        from deployments.models import Deployment
        from deployments.services import (
            auto_deploy,
            component_delete_check,
            component_running,
            component_teardown,
            deployment_approved,
            environment_in_use,
            environment_teardown,
            project_teardown,
        )
        from environments import approvals
        from environments.services import register_environment_use, register_project_teardown

        runs.register(rollout.KIND)
        for kind in (Deployment.DEPLOY, Deployment.PROMOTE, Deployment.ROLLBACK):
            approvals.register_executor(kind, deployment_approved)
        register_success_hook(auto_deploy)
        register_project_teardown(project_teardown)
        register_component_teardown(check=component_delete_check, teardown=component_teardown, describe=component_running)
        register_environment_use(in_use=environment_in_use, teardown=environment_teardown)
        housekeeping.register(rollout.replicas_reconcile)
        housekeeping.register(rollout.ingress_reconcile)
