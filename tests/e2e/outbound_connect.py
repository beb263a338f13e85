"""HTTP CONNECT tunnels through an agent's outbound entry, the way a
workload's client opens them: the entry and the credentials come from the
replica's HTTP_PROXY (`podless credentials`, harness.proxy_for), in the form
http://USER:PASSWORD@HOST:PORT."""

import base64
import socket

from harness import check


def connect_request(target, user_pass):
    """The CONNECT request for `target` ("HOST:PORT") with Basic
    credentials `user_pass` ("USER:PASSWORD")."""
    auth = base64.b64encode(user_pass.encode()).decode()
    return (f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n"
            f"Proxy-Authorization: Basic {auth}\r\n\r\n").encode()


def open_connect(entry, user_pass, target, timeout=30):
    """Sends CONNECT `target` to the outbound entry at `entry` (host, port)
    and reads the answer's head one byte at a time, so nothing that follows
    it through the tunnel is consumed: (head, socket). A head without its
    blank line: the entry closed the connection first."""
    s = socket.create_connection(entry, timeout=timeout)
    s.sendall(connect_request(target, user_pass))
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = s.recv(1)
        if not chunk:
            break
        head += chunk
    return head, s


def connect(proxy, target, timeout=30):
    """CONNECT `target` through the entry of HTTP_PROXY URL `proxy`: (the
    answer's status line, the socket)."""
    user_pass, entry = proxy.split("//", 1)[1].split("@")
    host, port = entry.rsplit(":", 1)
    head, s = open_connect((host, int(port)), user_pass, target, timeout)
    return head.split(b"\r\n", 1)[0].decode(errors="replace"), s


def tunnel(proxy, target, timeout=30):
    """A tunnel to `target` through `proxy`, as a socket; fails the test
    unless the entry answers 200."""
    status, s = connect(proxy, target, timeout)
    if not status.startswith("HTTP/1.1 200"):
        s.close()
    check(status.startswith("HTTP/1.1 200"), f"CONNECT {target}: {status!r}")
    return s


def read_line(s):
    """One line from `s` (up to and with its newline), byte by byte; fails
    the test if the connection ends first."""
    line = b""
    while not line.endswith(b"\n"):
        chunk = s.recv(1)
        check(chunk, f"closed after {line!r}")
        line += chunk
    return line.decode()
