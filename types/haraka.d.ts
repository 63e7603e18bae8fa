// Types for Haraka, which ships none: the untyped haraka-* packages this plugin imports, and
// the shapes of the Haraka objects it is handed (plugin, outbound item, hook callback).

declare module 'haraka-constants' {
  export const cont: number
  export const stop: number
  export const deny: number
  export const denysoft: number
  export const ok: number
  export function translate(code: number): string
}

declare module 'haraka-dsn' {
  class DSN {
    code: number
    msg: string
    cls: number
    sub: number
    det: number
    constructor(code: number | undefined, msg: string, def: number, subject: number, detail: number)
    static create(code: number, msg: string, subject: number, detail: number): DSN
  }
  export = DSN
}

declare namespace Haraka {
  /** A hook's callback: a return code from haraka-constants and its message or value. */
  type Next = (code?: number, msg?: unknown) => void

  interface Logger {
    loginfo(msg: string): void
    logwarn(msg: string): void
    logerror(msg: string): void
  }

  /** `this` in a plugin's register() and hooks. */
  interface Plugin extends Logger {
    name: string
    /** The hook timeout in seconds (config/<name>.timeout), when set. */
    timeout?: number
    config: { get(name: string, type: string | object, cb?: () => void): unknown }
    register_hook(hook: string, method: string, priority?: number): void
    haraka_require(name: string): unknown
  }

  interface Recipient {
    original?: string
  }

  /** An outbound queue item (outbound/hmail.js): one message to one domain. */
  interface HMail extends Logger {
    todo: {
      domain: string
      rcpt_to: Recipient[]
      /** Persisted with the queue file: `outbound_ip`, `outbound_helo`, … */
      notes?: Record<string, unknown>
      force_tls?: boolean
    }
    /** In memory only: lost on a restart. */
    notes: Record<string, unknown>
    extend_rcpt_with_dsn(rcpt: Recipient, dsn: unknown): void
  }
}
