# Releases, deployments, promotion and rollback land with the Deploy page issue.
