// Impaired IPv6 egress starts new destinations with IPv4 and races IPv6 second. When IPv4
// greets within the attempt delay, IPv6 is never started, so a path that healed would go
// unseen until the window's evidence expires. After such a race, one IPv6 address of its MX
// host is probed in the background as [watch] probes (TCP, the greeting, QUIT; nothing else
// is sent), at most once per [egress] recheck_s and one at a time: its connect clears the
// state, silence renews the evidence.

import type { EgressMemory } from './egress'
import { describeError } from './errors'
import { describeTimeline, type RaceResult, type RaceSocket, type RaceTarget } from './race'
import type { Plan } from './plan'

export interface RecheckOptions {
  egress: EgressMemory
  /** [egress] recheck_s in ms; 0 never rechecks. */
  intervalMs: number
  /** How long the probe waits for the connect and the greeting. */
  timeoutMs: number
  probe(target: RaceTarget, timeoutMs: number): Promise<RaceResult<RaceSocket>>
  /** What the probe found, for the health cache and the learnt state, as a race feeds them. */
  onResult(result: RaceResult<RaceSocket>): void
  log(level: 'info' | 'warn', msg: string): void
  /** Epoch ms; Date.now by default. */
  now?: () => number
}

/**
 * The IPv6 address worth a recheck after a race: one of an MX host the plan started with
 * IPv4 for impaired egress, when IPv4 won and that address never answered (not started, or
 * cancelled before its connect). Undefined when the race says nothing new about IPv6.
 */
export function recheckTarget(plan: Plan, result: RaceResult<RaceSocket>): RaceTarget | undefined {
  const lead = plan.ipv4FirstForEgress
  if (!lead?.length || result.winner?.target.family !== 'ipv4') return undefined
  const hosts = new Set(lead)
  const unanswered = result.attempts
    .filter((a) => a.outcome === 'cancelled' && a.connectMs === undefined)
    .map((a) => a.target)
  return [...unanswered, ...result.untried].find((t) => t.family === 'ipv6' && hosts.has(t.exchange))
}

const show = (t: RaceTarget): string => `${t.exchange} [${t.address}]:${t.port}`

/** Starts a recheck of `target` when one is due; never rejects. Resolves when it is over. */
export async function recheckEgress(target: RaceTarget, opts: RecheckOptions): Promise<boolean> {
  const now = opts.now ?? Date.now
  let claimed = false
  try {
    if (!opts.egress.claimRecheck(opts.intervalMs, now())) return false
    claimed = true
    const result = await opts.probe(target, opts.timeoutMs)
    opts.onResult(result)
    // A connect clears the state and says so (describeEgress); anything else is said here.
    if (opts.egress.read(now()).ipv6Impaired)
      opts.log('info', `IPv6 egress recheck at ${show(target)}: ${describeTimeline(result)}; still impaired`)
  } catch (err) {
    try {
      opts.log('warn', `IPv6 egress recheck at ${show(target)} failed: ${describeError(err)}`)
    } catch {
      // a broken logger has nothing better to report to; the recheck is over all the same
    }
  } finally {
    if (claimed) opts.egress.endRecheck()
  }
  return claimed
}
