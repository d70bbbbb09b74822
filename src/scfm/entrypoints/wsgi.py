"""The WSGI app for gunicorn: `gunicorn scfm.entrypoints.wsgi:app`."""
from scfm.entrypoints.app import create_app

app = create_app()
