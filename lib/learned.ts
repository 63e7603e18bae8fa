// What races teach across messages and destinations, beside the health cache: connect times
// (the learnt attempt delay) and this host's IPv6 egress. One function reads a race into both
// stores; one gives the race its per-target delay.

import type { Settings } from './config'
import type { ConnectTimes, DelayBounds } from './connect-times'
import { learnedDelay } from './connect-times'
import type { HostFamilies } from './connectivity'
import type { EgressMemory } from './egress'
import type { LearnedGauges } from './metrics'
import { queryPlanOf } from './planning'
import type { AttemptRecord, RaceResult, RaceSocket, RaceTarget } from './race'

export interface Learned {
  connectTimes?: ConnectTimes
  egress?: EgressMemory
}

/** From an attempt's start to its TCP connect, when it connected at all. */
export function connectTimeOf(a: AttemptRecord): number | undefined {
  if (a.connectMs !== undefined) return a.connectMs - a.startMs
  return a.outcome === 'connected' && a.endMs !== undefined ? a.endMs - a.startMs : undefined
}

/**
 * An attempt that never heard back: timed out at the deadline, or cancelled after waiting its
 * whole attempt delay without a connect. A refusal or other error is an answer.
 */
export function unanswered(a: AttemptRecord, elapsedMs: number, attemptDelayMs: number): boolean {
  if (a.connectMs !== undefined) return false
  if (a.outcome === 'timed out') return true
  if (a.outcome !== 'cancelled') return false
  return (a.endMs ?? elapsedMs) - a.startMs >= (a.delayMs ?? attemptDelayMs)
}

/** Feeds connect times and egress evidence from one race. */
export function learnFromRace(
  learned: Learned,
  result: RaceResult<RaceSocket>,
  attemptDelayMs: number,
  at = Date.now(),
): void {
  for (const a of result.attempts) {
    const { exchange, family } = a.target
    const connectMs = connectTimeOf(a)
    if (connectMs !== undefined) {
      learned.connectTimes?.record({ exchange, family, connectMs })
      learned.egress?.record({ exchange, family, outcome: 'connected', at })
    } else if (unanswered(a, result.elapsedMs, attemptDelayMs)) {
      learned.egress?.record({ exchange, family, outcome: 'unanswered', at })
    }
  }
}

/** The race's per-target attempt delay: learnt from connect times within the bounds. */
export function delayFor(
  connectTimes: ConnectTimes,
  bounds: DelayBounds,
): (target: Pick<RaceTarget, 'exchange' | 'family'>) => number {
  return (t) => learnedDelay(connectTimes.read(t.exchange, t.family), bounds)
}

/** The gauges of this host's state: egress, the families it sends from, the learnt delay. */
export function learnedGauges(
  learned: Learned,
  hostFamilies: HostFamilies | undefined,
  settings: Settings,
): LearnedGauges {
  const bounds = { minMs: settings.race.minAttemptDelayMs, maxMs: settings.race.attemptDelayMs }
  const usable = queryPlanOf(hostFamilies, settings)?.families
  return {
    ipv6EgressImpaired: Boolean(learned.egress?.read().ipv6Impaired),
    ...(usable ? { usableFamilies: usable } : {}),
    attemptDelayMs: {
      ipv4: learnedDelay(learned.connectTimes?.hostEstimate('ipv4'), bounds),
      ipv6: learnedDelay(learned.connectTimes?.hostEstimate('ipv6'), bounds),
    },
  }
}
