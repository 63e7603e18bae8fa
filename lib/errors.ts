// Errors kept as data: the code a socket or resolver error carries, and the short text an
// operator reads (`connect ECONNREFUSED`, `bind EINVAL`).

export interface ErrorFacts {
  /** `ECONNREFUSED`, `EINVAL`, … when the error has one. */
  code?: string
  /** The text shown in logs and DSNs. */
  text: string
}

export function errorFacts(err: unknown): ErrorFacts {
  if (err && typeof err === 'object') {
    const e = err as { code?: unknown; syscall?: unknown; message?: unknown }
    if (e.code) {
      const code = String(e.code)
      return { code, text: e.syscall ? `${String(e.syscall)} ${code}` : code }
    }
    if (e.message) return { text: String(e.message) }
  }
  return { text: String(err) }
}

/** `connect ECONNREFUSED`, `bind EINVAL`: what the operator needs from an error. */
export function describeError(err: unknown): string {
  return errorFacts(err).text
}
