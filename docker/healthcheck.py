#!/opt/sfu/bin/python
"""The image's HEALTHCHECK: GET /health of the server in this container.

Reads the same configuration as docker/entrypoint.sh (SFU_CONFIG, else
/etc/sfu/config.toml, else the baked-in default, then the SFU_* environment),
so it asks the port, address and scheme the server really uses.
"""

import json
import os
import ssl
import sys
import urllib.request

from sfu.config import load_config
from sfu.errors import ConfigError

DEFAULT = "/app/docker/config.toml"
path = os.environ.get("SFU_CONFIG") or (
    "/etc/sfu/config.toml" if os.path.isfile("/etc/sfu/config.toml") else DEFAULT
)
# Only the HTTP side matters here: a fixed announced IP spares the "auto" look-up.
try:
    config = load_config(path, environ={**os.environ, "SFU_ANNOUNCED_IP": "127.0.0.1"})
except ConfigError as error:
    print(error, file=sys.stderr)
    sys.exit(1)
host = config.http.listen_ip
if host in ("0.0.0.0", "::"):
    host = "127.0.0.1" if host == "0.0.0.0" else "::1"
if ":" in host:
    host = f"[{host}]"
scheme = "https" if config.tls.enabled else "http"
# The certificate names the public host, not 127.0.0.1: no verification here.
context = ssl._create_unverified_context() if config.tls.enabled else None
url = f"{scheme}://{host}:{config.http.port}/health"
try:
    with urllib.request.urlopen(url, timeout=4, context=context) as response:
        status = json.loads(response.read()).get("status")
except (OSError, ValueError) as error:
    print(f"{url}: {error}", file=sys.stderr)
    sys.exit(1)
print(f"{url}: {status}")
sys.exit(0 if status == "ok" else 1)
