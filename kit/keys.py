"""Where an API key may go: only to the URL it was named for, never over plain http to another host
(anyone on the way could read it). kit eval and kit data generate both follow this."""

import ipaddress
from urllib.parse import urlparse

from kit.errors import KitError


def is_loopback(host: str | None) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host or "").is_loopback
    except ValueError:
        return False


def refuse_plain_http(url: str, flag: str, key_env: str) -> None:
    """A KitError, before any connection, when a key would cross the network unencrypted."""
    parts = urlparse(url)
    if parts.scheme != "https" and not is_loopback(parts.hostname):
        raise KitError(f"{flag} {key_env}: refusing to send that key over plain http to {url}, where anyone "
                       "on the way could read it",
                       "use the server's https:// URL, or reach it on a loopback address "
                       "(e.g. an SSH tunnel to 127.0.0.1)")
