// The probe: plain TCP connects (no SMTP) to every planned address, first as the plugin's race
// would make them, then one each for the addresses the race cancelled or never started.
// Its report is data of its own: one result per address, reachability per family.

import net from 'node:net'

import type { Family } from '../classify'
import type { Settings } from '../config'
import { describeRaceFailure } from '../delivery'
import type { Plan } from '../plan'
import {
  type AttemptOutcome,
  type AttemptRecord,
  describeTimeline,
  raceConnect,
  type RaceResult,
  type RaceTarget,
} from '../race'
import { targetsOf } from '../route'
import type { Progress } from './progress'

export interface AddressProbe {
  target: RaceTarget
  /** What the race did with this address; 'not tried' when it never started it. */
  race: AttemptOutcome | 'not tried'
  raceStartMs?: number
  connected: boolean
  /** Time to connect, or until the error. */
  ms?: number
  error?: string
}

export type Reachability = 'reachable' | 'unreachable' | 'none'

export interface ProbeReport {
  port: number
  attemptDelayMs: number
  timeoutMs: number
  raceEnabled: boolean
  addresses: AddressProbe[]
  families: Record<Family, Reachability>
  chosen?: RaceTarget
  timeline: string
  /** The deferral the plugin would send when nothing connected. */
  failure?: string
}

type ConnectResult = Pick<AddressProbe, 'connected' | 'ms' | 'error'>

const noop = (): void => {}

function connectTo(target: RaceTarget): net.Socket {
  return net.connect({
    host: target.address,
    port: target.port,
    ...(target.bind ? { localAddress: target.bind } : {}),
  })
}

/** The socket is only a probe: closed as soon as it answered. */
function release(result: RaceResult<net.Socket>): void {
  const socket = result.winner?.socket
  socket?.on('error', noop)
  socket?.destroy()
}

/** What one finished attempt says about its address. */
function resultOf(a: AttemptRecord): ConnectResult | undefined {
  const ms = a.endMs === undefined ? undefined : a.endMs - a.startMs
  if (a.outcome === 'connected') return { connected: true, ms }
  if (a.outcome === 'failed' || a.outcome === 'timed out') return { connected: false, ms, error: a.error }
  return undefined
}

/** One connect, bounded by timeoutMs: a race of one with the timeout as its deadline. */
async function connectOnce(target: RaceTarget, timeoutMs: number): Promise<ConnectResult> {
  const result = await raceConnect([target], {
    attemptDelayMs: timeoutMs,
    groupDelayMs: timeoutMs,
    deadlineMs: timeoutMs,
    connect: connectTo,
  })
  release(result)
  const [attempt] = result.attempts
  const answer = resultOf(attempt) ?? { connected: false }
  // The bound as given, not the timer's millisecond of lateness.
  if (attempt.outcome === 'timed out') answer.error = `no answer in ${timeoutMs} ms`
  return answer
}

export async function probePlan(
  plan: Plan,
  settings: Settings,
  timeoutMs: number,
  progress: Progress,
): Promise<ProbeReport> {
  const targets = targetsOf(plan, settings)
  const s = (n: number): string => `${n} address${n === 1 ? '' : 'es'}`

  progress.update(`probing ${s(targets.length)}…`)
  try {
    const result = await raceConnect(targets, {
      attemptDelayMs: settings.race.attemptDelayMs,
      groupDelayMs: settings.race.groupDelayMs,
      deadlineMs: timeoutMs,
      connect: connectTo,
    })
    release(result)

    // attempts[i] is targets[i]: the race starts them in list order.
    const probes: AddressProbe[] = targets.map((target, i) => {
      const a = result.attempts[i]
      if (!a) return { target, race: 'not tried', connected: false }
      return { target, race: a.outcome, raceStartMs: a.startMs, connected: false, ...resultOf(a) }
    })

    // Addresses the race cancelled or never reached still get an answer of their own.
    const rest = probes.filter((p) => p.race === 'cancelled' || p.race === 'not tried')
    if (rest.length) {
      progress.update(`probing ${s(rest.length)} the race did not finish…`)
      const answers = await Promise.all(rest.map((p) => connectOnce(p.target, timeoutMs)))
      rest.forEach((p, i) => Object.assign(p, answers[i]))
    }

    const families = {} as Record<Family, Reachability>
    for (const f of ['ipv4', 'ipv6'] as const) {
      const mine = probes.filter((p) => p.target.family === f)
      families[f] = !mine.length ? 'none' : mine.some((p) => p.connected) ? 'reachable' : 'unreachable'
    }

    // Without racing, Haraka tries the plan in order and keeps the first that connects.
    const chosen = settings.race.enabled ? result.winner?.target : probes.find((p) => p.connected)?.target
    const report: ProbeReport = {
      port: settings.port,
      attemptDelayMs: settings.race.attemptDelayMs,
      timeoutMs,
      raceEnabled: settings.race.enabled,
      addresses: probes,
      families,
      timeline: describeTimeline(result),
    }
    if (chosen) report.chosen = chosen
    else {
      const { attempts, elapsedMs } = result
      const untried = targets.slice(attempts.length)
      report.failure = describeRaceFailure(plan.domain, { attempts, elapsedMs, untried })
    }
    return report
  } finally {
    progress.end()
  }
}
