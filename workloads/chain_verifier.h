// What the proxy asks of a peer's certificate chain after the TLS handshake,
// and what fuzzing targets: is it a valid X.509-SVID of our trust domain, and
// whose?
#pragma once

#include <openssl/x509.h>

#include <cstdint>
#include <string_view>
#include <vector>

#include "workloads/pem_file.h"  // ParsePemCertificates: parse a peer chain for the below
#include "workloads/result.h"
#include "workloads/spiffe_id.h"

namespace podless::workloads {

// Verifies `leaf` (with the untrusted `intermediates`, may be null) against
// `trust` at time `now_unix`, then requires what the X.509-SVID spec requires of
// a leaf: not a CA, no keyCertSign/cRLSign, exactly one URI SAN, which parses
// as a SPIFFE ID in `trust_domain`. Returns that ID, or PERMISSION_DENIED with
// the reason: "certificate expired", "no URI SAN", "2 URI SANs", "untrusted
// issuer", "trust domain example.org is not cluster.local", ... Does not modify
// its inputs and is safe to call from several threads on one store.
Result<SpiffeId> VerifySpiffeChain(X509* leaf, const STACK_OF(X509) * intermediates,
                                   X509_STORE* trust, std::string_view trust_domain,
                                   int64_t now_unix);

}  // namespace podless::workloads
