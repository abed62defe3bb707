"""One time format everywhere (`when`), and a running run's elapsed time (`running_for`)."""

from datetime import timedelta

from django.utils import timezone

from choreo_site.templatetags.times import running_for, when


def test_when_is_relative_with_the_iso_time_on_hover():
    moment = timezone.now() - timedelta(minutes=3, seconds=5)
    html = str(when(moment))
    assert ">3\xa0minutes ago</time>" in html and f'title="{moment.isoformat(timespec="seconds").replace("+00:00", "Z")}"' in html
    assert "in " in str(when(timezone.now() + timedelta(hours=2))) and when(None) == ""


def test_running_for_counts_seconds_then_minutes():
    assert running_for(timezone.now() - timedelta(seconds=42)) in ("42 s", "43 s")
    assert running_for(timezone.now() - timedelta(minutes=2, seconds=5)) in ("2 min 05 s", "2 min 06 s")
    assert running_for(timezone.now() + timedelta(seconds=5)) == "0 s" and running_for(None) == ""


def test_a_running_build_shows_how_long_it_has_run(db, logged_in, make_repo):
    from builds.models import Build
    from builds.services import component_create
    from environments.services import project_create

    component = component_create(project=project_create(name="shop"), name="web", repository=str(make_repo().path))
    Build.objects.create(component=component, commit="a" * 40, status=Build.RUNNING, started_at=timezone.now() - timedelta(seconds=75))
    rows = logged_in.get("/projects/shop/components/web/build/rows").content.decode()
    assert '<span class="elapsed"' in rows and ">1 min 1" in rows
