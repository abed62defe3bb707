# Task executions and schedules land with the Execute page issue.
