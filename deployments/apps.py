from django.apps import AppConfig


class DeploymentsConfig(AppConfig):
    name = "deployments"

    def ready(self) -> None:
        from builds.pipeline import register_success_hook
        from choreo_site import housekeeping, logstream
        from deployments.models import Deployment
        from deployments.rollout import ingress_reconcile, reap_orphans, replicas_reconcile
        from deployments.services import auto_deploy, deployment_approved, environment_in_use, environment_teardown, project_teardown
        from environments import approvals, permissions
        from environments.services import register_environment_use, register_project_teardown

        for kind in (Deployment.DEPLOY, Deployment.PROMOTE, Deployment.ROLLBACK):
            approvals.register_executor(kind, deployment_approved)
        register_success_hook(auto_deploy)
        register_project_teardown(project_teardown)
        register_environment_use(in_use=environment_in_use, teardown=environment_teardown)
        housekeeping.register(reap_orphans)
        housekeeping.register(replicas_reconcile)
        housekeeping.register(ingress_reconcile)

        logstream.register_stream_kind("rollout", model=Deployment, final_statuses=Deployment.FINAL, readable=permissions.check_view)
