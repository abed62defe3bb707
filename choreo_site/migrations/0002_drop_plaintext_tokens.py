"""API tokens are now stored hashed (choreo_site/tokens.py): the plaintext ones that DRF's
authtoken kept are deleted, so the database holds no usable key. Make new tokens with
`manage.py drf_create_token USER` or `POST /api/auth/token/`."""

from django.db import migrations


def drop_plaintext_tokens(apps, schema_editor):
    apps.get_model("authtoken", "Token").objects.all().delete()


class Migration(migrations.Migration):
    dependencies = [("choreo_site", "0001_initial"), ("authtoken", "0004_alter_tokenproxy_options")]

    operations = [migrations.RunPython(drop_plaintext_tokens, migrations.RunPython.noop)]
