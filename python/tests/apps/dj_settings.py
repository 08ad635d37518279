"""A minimal Django project using django-celery-beat on SQLite (the path from
BELFRY_TEST_DJANGO_DB)."""

import os

SECRET_KEY = "belfry-tests-only"
USE_TZ = True
TIME_ZONE = "UTC"
INSTALLED_APPS = ["django_celery_beat"]
DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3",
                         "NAME": os.environ.get("BELFRY_TEST_DJANGO_DB", ":memory:")}}
DEFAULT_AUTO_FIELD = "django.db.models.AutoField"
CELERY_TIMEZONE = "America/New_York"
