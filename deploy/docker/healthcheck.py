"""Container health check: exit 0 when the gateway's admin ``/readyz`` answers 200.

The image's ``HEALTHCHECK`` runs it (slim Python images have no curl). Standard
library only, so it works without the gateway's virtualenv on the path.

Environment:
  MESHGATE_HEALTHCHECK_URL         default http://127.0.0.1:8080/readyz
  MESHGATE_HEALTHCHECK_TOKEN_FILE  bearer token file, when gateway.admin.token_file is set
  MESHGATE_HEALTHCHECK_TIMEOUT     seconds, default 3
"""

from __future__ import annotations

import os
import sys
import urllib.error
import urllib.request

DEFAULT_URL = "http://127.0.0.1:8080/readyz"


def check(url: str, token_file: str | None, timeout: float) -> tuple[bool, str]:
    """(healthy, one line saying why) for one GET of ``url``."""
    request = urllib.request.Request(url)
    if token_file:
        try:
            with open(token_file, encoding="utf-8") as handle:
                token = handle.read().strip()
        except OSError as exc:
            return False, f"cannot read {token_file}: {exc.strerror}"
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status == 200, f"{url}: {response.status}"
    except urllib.error.HTTPError as exc:  # 503 while not ready: the body says why
        body = exc.read(300).decode("utf-8", "replace").replace("\n", " ")
        return False, f"{url}: {exc.code} {body}"
    except (OSError, ValueError) as exc:
        return False, f"{url}: {exc}"


def main() -> int:
    healthy, why = check(
        os.environ.get("MESHGATE_HEALTHCHECK_URL", DEFAULT_URL),
        os.environ.get("MESHGATE_HEALTHCHECK_TOKEN_FILE") or None,
        float(os.environ.get("MESHGATE_HEALTHCHECK_TIMEOUT", "3")),
    )
    print(why)  # shown by `docker inspect` under State.Health.Log
    return 0 if healthy else 1


if __name__ == "__main__":
    sys.exit(main())
