from django.db import models


class LogLine(models.Model):
    """One stored, already redacted line of a log stream (a build, a rollout, a task run).

    The stream name says what it belongs to (`build-42`); `seq` orders lines within it and
    is the offset a WebSocket client resumes from.
    """

    stream = models.CharField(max_length=100)
    seq = models.PositiveIntegerField()
    text = models.TextField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["stream", "seq"], name="logline_stream_seq_unique")]
        ordering = ["stream", "seq"]

    def __str__(self) -> str:
        return f"{self.stream}#{self.seq}"
