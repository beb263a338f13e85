#!/usr/bin/python3
"""An independent HBONE server for interop tests: Python's ssl (OpenSSL) and
the h2 library, written against RFC 9113 (CONNECT, section 8.5), not against
podless' code. The other direction of hbone_interop_client.py.

Listens on 127.0.0.1 (a free port), requires TLS 1.3, ALPN h2 and a client
certificate from --ca; answers each CONNECT with 200 and echoes the stream's
bytes back, prefixed by one line naming the client's URI SAN; ends the stream
when the client does. Prints "PORT <n>" once listening, serves --connections
connections, then exits.
"""
import argparse
import socket
import ssl
import sys

import h2.config
import h2.connection
import h2.events


def uri_san(cert):
    for kind, value in cert.get("subjectAltName", ()):
        if kind == "URI":
            return value
    return ""


def serve(tls):
    peer = uri_san(tls.getpeercert())
    # h2 4.1 insists on :path and :scheme in every request, which RFC 9113
    # section 8.5 forbids for CONNECT; the check is done here instead.
    conn = h2.connection.H2Connection(h2.config.H2Configuration(
        client_side=False, validate_inbound_headers=False))
    conn.initiate_connection()
    tls.sendall(conn.data_to_send())
    open_streams = set()
    served = 0
    while True:
        data = tls.recv(65536)
        if not data:
            return
        for event in conn.receive_data(data):
            if isinstance(event, h2.events.RequestReceived):
                headers = dict(event.headers)
                if headers.get(b":method") != b"CONNECT":
                    conn.send_headers(event.stream_id, [(":status", "405")], end_stream=True)
                    continue
                if b":path" in headers or b":scheme" in headers or b":authority" not in headers:
                    conn.send_headers(event.stream_id, [(":status", "400")], end_stream=True)
                    continue
                conn.send_headers(event.stream_id, [(":status", "200")])
                conn.send_data(event.stream_id,
                               f"peer={peer} authority={headers[b':authority'].decode()}\n".encode())
                open_streams.add(event.stream_id)
            elif isinstance(event, h2.events.DataReceived):
                conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
                conn.send_data(event.stream_id, event.data)
            elif isinstance(event, h2.events.StreamEnded):
                conn.end_stream(event.stream_id)
                open_streams.discard(event.stream_id)
                served += 1
            elif isinstance(event, h2.events.ConnectionTerminated):
                return
        tls.sendall(conn.data_to_send())


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--ca", required=True)
    p.add_argument("--cert", required=True)
    p.add_argument("--key", required=True)
    p.add_argument("--connections", type=int, default=1)
    args = p.parse_args()
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.load_verify_locations(args.ca)
    ctx.load_cert_chain(args.cert, args.key)
    ctx.set_alpn_protocols(["h2"])
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(4)
    listener.settimeout(20)
    print(f"PORT {listener.getsockname()[1]}", flush=True)
    for _ in range(args.connections):
        raw, _ = listener.accept()
        raw.settimeout(20)
        try:
            with ctx.wrap_socket(raw, server_side=True) as tls:
                if tls.selected_alpn_protocol() != "h2":
                    continue
                serve(tls)
        except (ssl.SSLError, OSError) as e:
            print(f"connection failed: {e}", file=sys.stderr, flush=True)


if __name__ == "__main__":
    main()
