// Types of link-local.js, which stays JavaScript while JavaScript tests require it.

import type { networkInterfaces } from 'node:os'

export interface ZonelessLinkLocalBehaviour {
  /** The connect errors with EINVAL at once; otherwise it waits (SYN sent via `via`). */
  fails: boolean
  via: string | null
  label: string
  reason: string
  /** Where that SYN could leave this machine, or null when nothing routes off the host. */
  offMachine: string | null
}

export function zonelessLinkLocalConnect(env?: {
  uv?: string
  interfaces?: ReturnType<typeof networkInterfaces>
}): ZonelessLinkLocalBehaviour

export function assertZonelessLinkLocalStaysHere(behaviour?: ZonelessLinkLocalBehaviour): void
