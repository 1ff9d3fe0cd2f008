"""Container HEALTHCHECK probe: exit 0 when GET http://127.0.0.1:$PORT<path> answers 2xx.

Usage: python healthcheck.py [PATH]   (PATH defaults to /healthz, the liveness route; the compose
file probes /readyz so that `docker compose up --wait` returns once the models are loaded).
$PORT defaults to 8000, the port the gunicorn config binds by default. Standard library only, so
the image needs no curl. Exit 1 (message on stderr) on a non-2xx answer, a refused connection or
a 4 s timeout.
"""

import os
import sys
import urllib.error
import urllib.request

path = sys.argv[1] if len(sys.argv) > 1 else "/healthz"
url = f"http://127.0.0.1:{os.environ.get('PORT', '8000')}{path}"
try:
    with urllib.request.urlopen(url, timeout=4) as response:
        sys.exit(0 if 200 <= response.status < 300 else 1)
except (urllib.error.URLError, OSError) as error:
    print(f"healthcheck {url}: {error}", file=sys.stderr)
    sys.exit(1)
