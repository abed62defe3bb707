"""Credentials in a component's https repository URL move out of the shown `repository`
into `repository_credentials`, write-only and encrypted at rest."""

from urllib.parse import urlsplit, urlunsplit

from django.db import migrations, models

import environments.keyring


def move_credentials(apps, schema_editor):
    Component = apps.get_model("builds", "Component")
    for component in Component.objects.all():
        parts = urlsplit(component.repository)
        if parts.scheme in ("http", "https") and "@" in parts.netloc:
            userinfo, _, host = parts.netloc.rpartition("@")
            component.repository = urlunsplit(parts._replace(netloc=host))
            component.repository_credentials = userinfo
            component.save(update_fields=["repository", "repository_credentials"])


class Migration(migrations.Migration):
    dependencies = [
        ("builds", "0003_auto_deploy_error_and_sealed_webhook_secret"),
    ]

    operations = [
        migrations.AddField(
            model_name="component",
            name="repository_credentials",
            field=environments.keyring.sealed(models.CharField(blank=True, default="", max_length=1000)),
        ),
        migrations.RunPython(move_credentials, migrations.RunPython.noop),
    ]
