// Every connect made for one message, the race's and Haraka's own, as they happen, and the
// explanation when Haraka ran out of addresses. Built from what happened to this message,
// never from the shared health cache, so a cache with ttl 0 or an entry written by another
// message cannot change the story. A message's DeliveryRecord (lib/delivery.ts) carries it.

import type { RaceTarget } from './race'
import { type DeliveryRecord, STATUS, type Status } from './delivery'
import type { PolicyRefusal } from './sender-policy'

export type AttemptSource = 'race' | 'haraka'

/**
 * One connect made for the message. `connected` is the TCP connect (or, for Haraka, the
 * socket it got, raced or its own); `abandoned` is a race attempt destroyed before it answered.
 */
export interface ConnectAttempt {
  address: string
  port: number
  by: AttemptSource
  outcome: 'connected' | 'failed' | 'abandoned'
  /** `connect ECONNREFUSED`, `connection timed out`, `no answer in 250 ms`. */
  error?: string
  /** Haraka delivered on the raced socket instead of connecting itself. */
  handedOver?: boolean
  /** From the start of the connect to its outcome. */
  ms: number
  /** Epoch ms of the outcome. */
  at: number
}

export class MessageConnects {
  readonly domain: string
  /** The addresses handed to Haraka, in its order; set once the route is known. */
  targets: RaceTarget[] = []
  readonly attempts: ConnectAttempt[] = []
  /**
   * Whether Haraka's own connects for this message are seen (a client pool bridge is
   * installed): only then does "no attempt" mean Haraka did not connect.
   */
  observed = false
  /** IPv6 sender-policy refusals seen on this message's sessions, as they come. */
  readonly refusals: PolicyRefusal[] = []
  /** MX hosts this message was switched to IPv4 for before this attempt: never a second switch. */
  switchedBefore: readonly string[] = []

  constructor(domain: string) {
    this.domain = domain
  }

  add(attempt: ConnectAttempt): void {
    this.attempts.push(attempt)
  }
}

/** `connect ECONNREFUSED` out of whatever a Haraka client pool passes as its connect error. */
export function describeConnectError(err: unknown): string {
  if (err && typeof err === 'object') {
    const e = err as { code?: unknown; syscall?: unknown }
    if (e.code) return e.syscall ? `${String(e.syscall)} ${String(e.code)}` : String(e.code)
  }
  // Haraka 3.0: "Outbound connection error: Error: connect ECONNREFUSED 127.0.0.1:25";
  // 3.1+: "connect ECONNREFUSED 127.0.0.1:25", "connection timed out to outbound::{...}".
  const text = String(err instanceof Error ? err.message : err)
  const sys = /\b(connect|bind|read|write) (E[A-Z0-9_]+)\b/.exec(text)
  if (sys) return `${sys[1]} ${sys[2]}`
  if (/timed out/i.test(text)) return 'connection timed out'
  return text.length > 200 ? `${text.slice(0, 200)}…` : text
}

const sameTarget = (a: ConnectAttempt, t: Pick<RaceTarget, 'address' | 'port'>): boolean =>
  a.address === t.address && a.port === t.port

function describeAttempt(a: ConnectAttempt, observed: boolean): string {
  if (a.by === 'haraka') {
    if (a.outcome !== 'connected') return a.error ?? 'failed'
    return `connected${a.handedOver ? ' (raced socket)' : ''}, then the SMTP session failed`
  }
  if (a.outcome === 'connected') {
    return observed ? 'connected in the race; Haraka did not use it' : 'connected (race)'
  }
  // Slow is not failed: a loser the race gave up on is never reported as an error.
  if (a.outcome === 'abandoned') return `not tried by Haraka; another address won the race after ${a.ms} ms`
  return `${a.error ?? 'failed'} (race)`
}

/**
 * Why every planned address failed, from this message's own attempts: Haraka's last connect to
 * each address when it made one, else the race's last attempt. Replaces Haraka's bare
 * "Tried all MXs"; 4.4.2 when some address connected and the SMTP session then failed.
 */
export function explainExhausted(record: MessageConnects): { status: Status; reason: string } {
  let connected = false
  const parts = record.targets.map((t) => {
    const mine = record.attempts.filter((a) => sameTarget(a, t))
    const last = mine.filter((a) => a.by === 'haraka').at(-1) ?? mine.at(-1)
    if (!last) return `${t.address}: ${record.observed ? 'not tried' : 'outcome not seen'}`
    if (last.by === 'haraka' && last.outcome === 'connected') connected = true
    return `${t.address}: ${describeAttempt(last, record.observed)}`
  })
  const status = connected ? STATUS.badConnection : STATUS.noAnswer
  return { status, reason: `every MX address of ${record.domain} failed: ${parts.join('; ')}` }
}

/**
 * The local addresses of one message: the plugin's per-family `[bind]` first, else the
 * message's `notes.outbound_ip`, exactly the address Haraka will bind (it sets `mx.bind` from
 * the note only when the entry has none), so a raced socket is the one Haraka asks for. An
 * IPv4 note towards an IPv6 target then fails at once, as it does without the plugin.
 */
export function messageBind(
  bind: { ipv4?: string; ipv6?: string },
  outboundIp: unknown,
): { ipv4?: string; ipv6?: string } {
  if (typeof outboundIp !== 'string' || !outboundIp) return bind
  return { ipv4: bind.ipv4 ?? outboundIp, ipv6: bind.ipv6 ?? outboundIp }
}

/**
 * The status and reason this plugin gives a deferral or bounce of its message: its own
 * decision, or, when Haraka ran out of the planned addresses ("Tried all MXs" in Haraka's own
 * error), what happened to each of them. Undefined when the failure is Haraka's own.
 */
export function explainedFailure(
  record: DeliveryRecord,
  harakaError: string,
): { status: Status; reason: string } | undefined {
  const d = record.decision
  if (d.action === 'defer' || d.action === 'bounce') return d
  if (d.action === 'deliver' && record.connects && /Tried all MXs/.test(harakaError))
    return explainExhausted(record.connects)
  return undefined
}
