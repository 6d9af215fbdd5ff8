// Early-return helpers for absl::Status / absl::StatusOr, for code above the engine that
// must not include it (common/, the scheduler). The definitions are token for token those
// of engine/status_macros.h, so a file may include both.
#ifndef PICE_COMMON_STATUS_MACROS_H_
#define PICE_COMMON_STATUS_MACROS_H_

#include "absl/status/status.h"
#include "absl/status/statusor.h"

#define PICE_CONCAT_INNER_(a, b) a##b
#define PICE_CONCAT_(a, b) PICE_CONCAT_INNER_(a, b)

// Returns the status of `expr` from the enclosing function when it is not OK.
#define PICE_RETURN_IF_ERROR(expr)                  \
  do {                                              \
    ::absl::Status pice_status_ = (expr);           \
    if (!pice_status_.ok()) return pice_status_;    \
  } while (0)

// `lhs = value of expr`, or returns its status. lhs may be a declaration.
#define PICE_ASSIGN_OR_RETURN(lhs, expr)                                   \
  auto PICE_CONCAT_(pice_sor_, __LINE__) = (expr);                         \
  if (!PICE_CONCAT_(pice_sor_, __LINE__).ok())                             \
    return PICE_CONCAT_(pice_sor_, __LINE__).status();                     \
  lhs = *std::move(PICE_CONCAT_(pice_sor_, __LINE__))

#endif  // PICE_COMMON_STATUS_MACROS_H_
