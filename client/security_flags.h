// The TLS and token flags recsys-client and recsys-bench share, defined
// once for both: --tls, --tls_ca, --tls_cert, --tls_key, --tls_server_name,
// --token and --token_file.
//
//   RECSYS_ASSIGN_OR_RETURN(ChannelOptions o, SecurityFromFlags());
//   o.target = "recsys:50051";
//   RECSYS_ASSIGN_OR_RETURN(auto channel, MakeChannel(o));
#ifndef RECSYS_CLIENT_SECURITY_FLAGS_H_
#define RECSYS_CLIENT_SECURITY_FLAGS_H_

#include "absl/status/statusor.h"
#include "client/client.h"

namespace recsys {

// The flags' values (the target left as it is by default). A usage error
// for both --token and --token_file; the token file's own errors (missing,
// empty) as ReadTokenFile gives them.
absl::StatusOr<ChannelOptions> SecurityFromFlags();

}  // namespace recsys

#endif  // RECSYS_CLIENT_SECURITY_FLAGS_H_
