/* pyrec error codes: defined once, named and described by pyrec_errname/strerror. */
#ifndef PYREC_ERROR_H
#define PYREC_ERROR_H

#include <stdint.h>

/* X(NAME, "message"): every error the C core can return. Functions return 0 (PYREC_OK)
 * on success and one of these positive codes on failure. */
#define PYREC_ERRORS(X)                                                        \
  X(NOMEM, "out of memory")                                                    \
  X(INVAL, "invalid argument")                                                 \
  X(CODEC, "unsupported codec")                                                \
  X(CONFIG, "invalid or missing codec configuration")                          \
  X(MALFORMED, "malformed input")                                              \
  X(TRUNCATED, "truncated input")                                              \
  X(TOOBIG, "size limit exceeded")                                             \
  X(IO, "write to output failed")                                              \
  X(STATE, "operation not valid in this state")                                \
  X(NOTRACK, "no such track")                                                  \
  X(CALLBACK, "callback failed")

typedef enum {
  PYREC_OK = 0,
#define PYREC_X_ENUM(name, msg) PYREC_E_##name,
  PYREC_ERRORS(PYREC_X_ENUM)
#undef PYREC_X_ENUM
  PYREC_E__COUNT
} pyrec_err;

/* Details of the last error of an object. `msg` says what was wrong in words (e.g. the codec
 * name, the field, the limit); `offset` is the input byte offset where parsing failed (or -1);
 * `sys_errno` is errno for PYREC_E_IO (0 otherwise). */
typedef struct pyrec_errinfo {
  int code;
  int sys_errno;
  int64_t offset;
  char msg[200];
} pyrec_errinfo;

const char *pyrec_errname(int code);  /* "MALFORMED"; "UNKNOWN" for codes outside the list */
const char *pyrec_strerror(int code); /* "malformed input" */

/* Fill `e` (may be NULL) and return `code`. printf-style detail message. */
int pyrec_seterr(pyrec_errinfo *e, int code, int64_t offset, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
void pyrec_clearerr(pyrec_errinfo *e);

#endif
