"""The project's Celery app, configured from the Django settings (CELERY_ namespace)."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "dj_settings")
app = Celery("dj_project")
app.config_from_object("django.conf:settings", namespace="CELERY")
