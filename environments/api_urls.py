from django.urls import path

from environments import api

urlpatterns = [
    path("projects/", api.ProjectList.as_view(), name="api-projects"),
    path("projects/<str:project>/", api.ProjectDetail.as_view(), name="api-project"),
    path("projects/<str:project>/environments/", api.EnvironmentList.as_view(), name="api-environments"),
    path("projects/<str:project>/environments/<str:environment>/", api.EnvironmentDetail.as_view(), name="api-environment"),
    path("projects/<str:project>/approvals/", api.ApprovalList.as_view(), name="api-approvals"),
    path("approvals/<int:approval_id>/approve/", api.ApprovalApprove.as_view(), name="api-approval-approve"),
    path("approvals/<int:approval_id>/reject/", api.ApprovalReject.as_view(), name="api-approval-reject"),
    path("projects/<str:project>/members/", api.MemberList.as_view(), name="api-members"),
    path("projects/<str:project>/members/<str:username>/", api.MemberDetail.as_view(), name="api-member"),
    path("projects/<str:project>/audit/", api.ProjectAudit.as_view(), name="api-project-audit"),
]
