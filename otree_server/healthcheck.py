"""Container healthcheck: the oTree server answers a page, which also touches its database."""
import sys
import urllib.request

try:
    urllib.request.urlopen("http://127.0.0.1:8000/login", timeout=10)
except Exception as error:  # any failure means unhealthy; say why in `docker inspect`
    print(f"oTree is not answering: {error}")
    sys.exit(1)
