#!/usr/bin/python3
"""An independent HBONE client for interop tests: Python's ssl (OpenSSL) and
the h2 library, written against RFC 9113 (CONNECT, section 8.5), not against
podless' code.

Opens one mTLS connection (TLS 1.3, ALPN as given, client certificate),
sends one CONNECT stream per --authority concurrently, writes --payload on
each 200 stream then half-closes, and collects what comes back until every
stream ended. Prints one JSON object:
  {"peer": <server URI SAN>, "alpn": ..., "streams": [{"authority", "status",
   "data", "ended", "reset"}]}
or {"error": "..."} when the connection fails.
"""
import argparse
import codecs
import json
import socket
import ssl
import sys

import h2.config
import h2.connection
import h2.events


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--connect", required=True, help="ip:port to dial")
    p.add_argument("--ca", required=True)
    p.add_argument("--cert", required=True)
    p.add_argument("--key", required=True)
    p.add_argument("--alpn", default="h2")
    p.add_argument("--sni", default="")
    p.add_argument("--authority", action="append", default=[])
    p.add_argument("--payload", default="hello hbone\n")
    p.add_argument("--timeout", type=float, default=10.0)
    args = p.parse_args()
    # Escapes (\r\n) in --payload are decoded, so an HTTP request fits on a command line.
    args.payload = codecs.decode(args.payload, "unicode_escape")

    host, port = args.connect.rsplit(":", 1)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.check_hostname = False  # SPIFFE IDs are URI SANs, checked below
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.load_verify_locations(args.ca)
    ctx.load_cert_chain(args.cert, args.key)
    ctx.set_alpn_protocols([args.alpn])
    try:
        raw = socket.create_connection((host, int(port)), timeout=args.timeout)
        tls = ctx.wrap_socket(raw, server_hostname=args.sni or None)
        # TLS 1.3: a client-certificate rejection arrives after the client's
        # Finished; a read surfaces it.
        conn = h2.connection.H2Connection(h2.config.H2Configuration(
            client_side=True, validate_outbound_headers=False))
        conn.initiate_connection()
        tls.sendall(conn.data_to_send())
    except (ssl.SSLError, OSError) as e:
        print(json.dumps({"error": str(e)}))
        return
    peer = None
    for kind, value in tls.getpeercert().get("subjectAltName", ()):
        if kind == "URI":
            peer = value
    streams = {}
    for authority in args.authority:
        sid = conn.get_next_available_stream_id()
        conn.send_headers(sid, [(":method", "CONNECT"), (":authority", authority)])
        streams[sid] = {"authority": authority, "status": None, "data": "", "ended": False,
                        "reset": False}
    tls.sendall(conn.data_to_send())

    def done():
        return all(s["ended"] or s["reset"] for s in streams.values())

    try:
        while not done():
            chunk = tls.recv(65536)
            if not chunk:
                break
            for event in conn.receive_data(chunk):
                s = streams.get(getattr(event, "stream_id", None))
                if isinstance(event, h2.events.ResponseReceived):
                    status = int(dict(event.headers)[b":status"])
                    s["status"] = status
                    if status == 200:
                        conn.send_data(event.stream_id, args.payload.encode(), end_stream=True)
                elif isinstance(event, h2.events.DataReceived):
                    s["data"] += event.data.decode("utf-8", "replace")
                    conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
                elif isinstance(event, h2.events.StreamEnded):
                    s["ended"] = True
                elif isinstance(event, h2.events.StreamReset):
                    s["reset"] = True
                elif isinstance(event, h2.events.ConnectionTerminated):
                    for s2 in streams.values():
                        s2["reset"] = s2["reset"] or not s2["ended"]
            tls.sendall(conn.data_to_send())
    except (ssl.SSLError, OSError) as e:
        print(json.dumps({"error": str(e), "peer": peer,
                          "streams": list(streams.values())}))
        return
    print(json.dumps({"peer": peer, "alpn": tls.selected_alpn_protocol(),
                      "streams": list(streams.values())}))
    tls.close()


if __name__ == "__main__":
    sys.exit(main())
