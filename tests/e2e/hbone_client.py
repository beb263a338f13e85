"""An HBONE client for the end-to-end tests, independent of the agent's
code: Python's ssl for the mTLS connection (ALPN h2) and the h2 package for
the HTTP/2 CONNECT streams (RFC 9113 section 8.5) on it."""

import ssl

import h2.config
import h2.connection
import h2.events


def tls_context(bundle, cert=None, key=None):
    """A TLS 1.3 client context for an HBONE listener: the CA `bundle`
    verifies the server's certificate (its identity is a SPIFFE ID in a URI
    SAN, so no host name is checked), `cert`/`key` (PEM files) is the client's
    own certificate when given, and ALPN offers h2."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.load_verify_locations(bundle)
    if cert:
        ctx.load_cert_chain(cert, key)
    ctx.set_alpn_protocols(["h2"])
    return ctx


def h2_connection(**config):
    """A client-side h2 connection with its preface queued (data_to_send()).
    Outbound headers are not validated: h2 would insist on :path, which a
    plain CONNECT must not carry. `config`: more H2Configuration settings."""
    conn = h2.connection.H2Connection(h2.config.H2Configuration(
        client_side=True, validate_outbound_headers=False, **config))
    conn.initiate_connection()
    return conn


class H2Client:
    """HTTP/2 CONNECT streams over any byte transport: `send(bytes)` and
    `recv()` (b"" when the peer closed)."""

    def __init__(self, send, recv):
        self.send, self.recv = send, recv
        self.conn = h2_connection()
        self.streams = {}
        self.terminated = None
        self.flush()

    def flush(self):
        data = self.conn.data_to_send()
        if data:
            self.send(data)

    def pump(self, until):
        while not until():
            chunk = self.recv()
            if not chunk:
                raise EOFError("connection closed by the agent")
            for event in self.conn.receive_data(chunk):
                s = self.streams.get(getattr(event, "stream_id", None))
                if isinstance(event, h2.events.ResponseReceived):
                    s["status"] = int(dict(event.headers)[b":status"])
                elif isinstance(event, h2.events.DataReceived):
                    s["data"] += event.data
                    self.conn.acknowledge_received_data(event.flow_controlled_length,
                                                        event.stream_id)
                elif isinstance(event, h2.events.StreamEnded):
                    s["ended"] = True
                elif isinstance(event, h2.events.StreamReset) and s is not None:
                    s["reset"] = event.error_code
                elif isinstance(event, h2.events.ConnectionTerminated):
                    self.terminated = event.error_code
                    raise EOFError(f"GOAWAY {event.error_code}")
            self.flush()

    def connect(self, authority, headers=(), payload=b""):
        """One CONNECT stream: on 200, `payload` is sent and the stream
        half-closed, then everything until the agent ends it is collected.
        {"status", "data", "ended", "reset"} of the stream."""
        sid = self.conn.get_next_available_stream_id()
        self.conn.send_headers(sid, [(":method", "CONNECT"), (":authority", authority),
                                     *headers])
        s = self.streams[sid] = {"status": None, "data": b"", "ended": False, "reset": None}
        self.flush()
        self.pump(lambda: s["status"] is not None or s["reset"] is not None)
        if s["status"] == 200:
            self.conn.send_data(sid, payload, end_stream=True)
            self.flush()
        self.pump(lambda: s["ended"] or s["reset"] is not None)
        return s
