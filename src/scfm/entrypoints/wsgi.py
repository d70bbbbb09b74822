"""The WSGI app: `app` for any WSGI server; `served`, the app with our access log, which `scfm serve` serves."""
from scfm.entrypoints.app import create_app
from scfm.entrypoints.serve import AccessLog

app = create_app()
served = AccessLog(app)
