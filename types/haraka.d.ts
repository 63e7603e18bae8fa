// Minimal types for the untyped haraka-* packages, covering what this plugin uses.

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

declare module 'haraka-net-utils' {
  export interface HarakaMxFields {
    exchange?: string
    path?: string
    priority?: number
    port?: number
    bind?: string
    bind_helo?: string
    using_lmtp?: boolean
    auth_user?: string
    auth_pass?: string
    auth_type?: string
    from_dns?: string
  }
  export class HarakaMx implements HarakaMxFields {
    constructor(obj?: HarakaMxFields | string, domain?: string)
    exchange?: string
    path?: string
    priority: number
    port?: number
    bind?: string
    from_dns?: string
  }
  export function add_line_processor(socket: NodeJS.EventEmitter): void
}
