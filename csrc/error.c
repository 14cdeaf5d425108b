/* Error names and messages, generated from the one list in error.h. */
#include "pyrec/error.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

const char *pyrec_errname(int code) {
  switch (code) {
  case PYREC_OK:
    return "OK";
#define PYREC_X_NAME(name, msg)                                                \
  case PYREC_E_##name:                                                         \
    return #name;
    PYREC_ERRORS(PYREC_X_NAME)
#undef PYREC_X_NAME
  default:
    return "UNKNOWN";
  }
}

const char *pyrec_strerror(int code) {
  switch (code) {
  case PYREC_OK:
    return "success";
#define PYREC_X_MSG(name, msg)                                                 \
  case PYREC_E_##name:                                                         \
    return msg;
    PYREC_ERRORS(PYREC_X_MSG)
#undef PYREC_X_MSG
  default:
    return "unknown error";
  }
}

int pyrec_seterr(pyrec_errinfo *e, int code, int64_t offset, const char *fmt, ...) {
  if (e) {
    e->code = code;
    e->offset = offset;
    e->sys_errno = 0;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->msg, sizeof e->msg, fmt, ap);
    va_end(ap);
  }
  return code;
}

void pyrec_clearerr(pyrec_errinfo *e) {
  if (e) {
    memset(e, 0, sizeof *e);
    e->offset = -1;
  }
}
