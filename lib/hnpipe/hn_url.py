"""Where the HN client may go: which API base URLs are acceptable, how a URL is shown
without its secrets, and what kind of host (public, private, link-local) a name or address is.

`hnpipe.params` validates the `hn_api_url` and `hn_api_private_hosts` parameters with these
rules; `hnpipe.hn` applies them again to what a name resolves to and to every redirect.
"""

from __future__ import annotations

import re

# Names that mean this machine or a cloud's instance metadata, whatever DNS says.
_LOOPBACK_NAMES = ("localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback")
_METADATA_NAMES = ("metadata", "metadata.google.internal", "instance-data", "instance-data.ec2.internal")


def _authority(value: str) -> str:
    """What stands between :// and the path, query or fragment (all of it when no scheme)."""
    rest = value.partition("://")[2] or value
    return re.split(r"[/?#]", rest, maxsplit=1)[0]


def _as_read(authority: str) -> str:
    """The authority as some reader may take it: percent-decoded (repeatedly), NFKC-folded
    (full-width ＠ and ：, small ﹫ become @ and :) and its xn-- labels decoded (IDNA), so
    credentials are found however their @ or : is written."""
    import unicodedata
    from urllib.parse import unquote

    for _ in range(5):  # %2540 is %40 is @
        decoded = unquote(authority)
        if decoded == authority:
            break
        authority = decoded
    labels = []
    for label in unicodedata.normalize("NFKC", authority).split("."):
        if label.lower().startswith("xn--"):
            try:
                label = label[4:].encode("ascii").decode("punycode")
            except (UnicodeError, ValueError):
                pass  # not punycode: judged as written
        labels.append(label)
    return unicodedata.normalize("NFKC", ".".join(labels))


def has_credentials(value: str) -> bool:
    """Whether `value` holds user:password@ (or user@) in any spelling of the @."""
    return "@" in _as_read(_authority(value))


def shown_url(value: str) -> str:
    """A URL fit to print: user:password@ becomes ***@ (however the @ is written), a query or
    fragment ?*** (never echoed)."""
    scheme, sep, rest = value.partition("://")
    if not sep:
        return "***" if has_credentials(value) else value
    authority, slash, path = rest.partition("/")
    if has_credentials(value):
        authority = "***@" + _as_read(authority).rpartition("@")[2]
        authority = re.split(r"[/?#]", authority, maxsplit=1)[0]  # a decoded / or ? ends it
    for mark in ("?", "#"):  # a query may hold a token as well
        if mark in authority + slash + path:
            before = (authority + slash + path).split(mark)[0]
            authority, slash, path = before, "", ""
            return f"{scheme}://{before}{mark}***"
    return f"{scheme}://{authority}{slash}{path}"


def url_problem(value: str) -> str | None:
    """Why `value` is not an acceptable HN API base URL, or None: http(s), a host, no credentials,
    no query or fragment, a possible port, no link-local or metadata host."""
    from urllib.parse import urlsplit

    if has_credentials(value):  # before urlsplit, whose errors would echo the password
        return ("a URL must not hold a user name or password (user:pass@host, however the @ is "
                "written): parameters are written into every executed notebook and the run "
                "history; the HN API needs none")
    if re.search(r"[\s\x00-\x1f\x7f]", value):
        return "use an http(s) URL without spaces or control characters"
    try:
        parts = urlsplit(value)
        port = parts.port  # ValueError when it is not a number from 0 to 65535
    except ValueError as error:  # what it quotes from the value (a password?) is left out
        reason = re.sub(r"'[^']*'", "...", str(error))
        return f"not a usable URL ({reason}): use e.g. https://hacker-news.firebaseio.com/v0"
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return ("use 'sample' (the bundled sample) or an http(s) URL such as "
                "https://hacker-news.firebaseio.com/v0")
    if "?" in value or "#" in value:
        return "the API base takes no query (?...) or fragment (#...): hnpipe appends /maxitem.json and /item/<id>.json"
    if port == 0 or (parts.netloc.endswith(":") and port is None):
        return "the port must be a number from 1 to 65535"
    kind = host_kind(parts.hostname)
    if kind in ("link-local", "unusable"):
        return (f"host {parts.hostname} is {'a link-local or cloud metadata address' if kind == 'link-local' else 'not an address a server can have'}: "
                "the HN client never goes there")
    return None


def host_kind(host: str) -> str:
    """'public', 'private' (loopback or a private network), 'link-local' (incl. cloud metadata)
    or 'unusable' (unspecified, multicast, reserved), judged from the name as written."""
    import ipaddress
    import socket

    name = host.strip("[]").rstrip(".").lower()
    if name in _METADATA_NAMES:
        return "link-local"
    if name in _LOOPBACK_NAMES or name.endswith(".localhost"):
        return "private"
    try:
        address = ipaddress.ip_address(name.partition("%")[0])
    except ValueError:
        if not re.fullmatch(r"[0-9a-fx.]+", name):
            return "public"  # a DNS name: the HN client checks what it resolves to
        try:  # 2130706433, 0x7f.1, 127.1: forms the resolver reads as IPv4 addresses
            address = ipaddress.ip_address(socket.inet_aton(name))
        except OSError:
            return "public"
    return address_kind(address)


def address_kind(address) -> str:
    """host_kind for an ipaddress address (IPv4-mapped IPv6 judged as the IPv4 it maps)."""
    mapped = getattr(address, "ipv4_mapped", None)
    address = mapped or address
    if address.is_link_local:
        return "link-local"
    if address.is_unspecified or address.is_multicast:
        return "unusable"
    if address.is_loopback or address.is_private:
        return "private"
    return "unusable" if address.is_reserved else "public"


def check_private_hosts(value: list) -> None:
    for host in value:
        if not isinstance(host, str) or not re.fullmatch(r"[A-Za-z0-9.:\[\]-]{1,255}", host):
            raise ValueError("use a list of host names or addresses, e.g. [hn-mirror.internal, 10.0.0.5]")
        if host_kind(host) in ("link-local", "unusable"):
            raise ValueError(f"host {host} is link-local, cloud metadata or unusable: it can never be allowed")
