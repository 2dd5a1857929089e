// Failpoints for crash tests (SECURITY.md "Fault injection"). The environment
// variable MOAT_FAILPOINT names points and actions, comma-separated:
//   MOAT_FAILPOINT="spool.before_fsync=kill"       SIGKILL ourselves there
//   MOAT_FAILPOINT="queue.during_delivery=kill@3"   on the 3rd hit
//   MOAT_FAILPOINT="spool.write=error"              hit() returns true: caller fails
//   MOAT_FAILPOINT="x=sleep:200"                    sleep 200 ms
// Unset, hit() costs one relaxed load.
#pragma once

#include <string_view>

namespace moat::failpoint {

// Returns true when the point is armed with "error" (the caller then behaves
// as if the operation failed). "kill" never returns.
bool hit(std::string_view point);

// Re-reads MOAT_FAILPOINT (tests that set it at run time).
void reload();

}  // namespace moat::failpoint
