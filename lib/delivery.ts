// One message's route to one domain as data: what DNS said, the plan with every filtered
// address and why, each race attempt with its outcome, and the answer given to Haraka. The
// log line, the DSN text, the command's output and the bench all render this one value.

import type { MessageConnects } from './connects'
import { describeFiltered, describePlan, type Plan } from './plan'
import { type AttemptRecord, describeFailures, describeTimeline, type RaceTarget } from './race'
import type { WarmResult } from './shared-health'
import type { Resolution } from './resolve'

/** An RFC 3463 status a deferral or bounce carries: class 4 or 5, subject, detail. */
export interface Status {
  code: 450 | 550
  subject: number
  detail: number
}

export const STATUS = {
  dnsTemporary: { code: 450, subject: 4, detail: 3 },
  noRoute: { code: 450, subject: 4, detail: 4 },
  noRouteFinal: { code: 550, subject: 4, detail: 4 },
  noAnswer: { code: 450, subject: 4, detail: 1 },
  badConnection: { code: 450, subject: 4, detail: 2 },
  noDomain: { code: 550, subject: 1, detail: 2 },
  // RFC 7505: what Haraka's own null MX path bounces with.
  nullMx: { code: 550, subject: 1, detail: 10 },
} as const satisfies Record<string, Status>

/** `4.4.1`: the status as a DSN shows it. */
export const showStatus = (s: Status): string => `${Math.floor(s.code / 100)}.${s.subject}.${s.detail}`

/** What the plugin told Haraka. */
export type Decision =
  | {
      action: 'deliver'
      /** Connect targets in the order handed to Haraka: a race winner first. */
      targets: RaceTarget[]
      winner?: RaceTarget
    }
  | { action: 'null-mx'; status: Status; reason: string }
  | { action: 'defer' | 'bounce'; status: Status; reason: string }

/** The race, without its sockets. */
export interface RaceRecord {
  attempts: AttemptRecord[]
  elapsedMs: number
  /** Planned targets the race never started before its deadline. */
  untried: RaceTarget[]
}

export interface DeliveryRecord {
  /** The domain as looked up (A-label, lower case). */
  domain: string
  resolution: Resolution
  /** Present once DNS gave MX hosts. */
  plan?: Plan
  /** Present when the connections were raced. */
  race?: RaceRecord
  decision: Decision
  /**
   * Address lookups still unanswered when the race had its winner or its deadline, as
   * `mx2.example AAAA`: left behind, not waited for. Absent when every lookup answered.
   */
  pendingLookups?: string[]
  /** Every connect made for the message as it happens, the race's and Haraka's own. */
  connects?: MessageConnects
  /** Present when the local caches were filled from the shared state before planning. */
  shared?: WarmResult
}

/**
 * The name of the `hmail.notes` entry that holds a message's DeliveryRecord, for this
 * plugin's deferred/bounce hooks and for any other plugin that wants to read it.
 */
export const RECORD_NOTE = 'happy_eyeballs'

const andReason = (d: Decision): string => (d.action === 'deliver' ? '' : `: ${d.reason}`)

/**
 * The one log line per message: `plan for D: try …; filtered …; race …; winner A`, or the
 * decision and its reason.
 */
export function describeDelivery(r: DeliveryRecord): string {
  const d = r.decision
  if (d.action === 'null-mx') return `${r.domain} has a null MX`
  if (!r.plan) return d.action === 'deliver' ? `deliver to ${r.domain}` : `${d.action}: ${d.reason}`
  const parts = [describePlan(r.plan)]
  if (r.race) parts.push(`race ${describeTimeline(r.race)}`)
  // Lookups the race did not wait for: named before a deferral's reason, after a winner.
  const pending = r.pendingLookups?.length ? `lookups left pending ${r.pendingLookups.join(', ')}` : ''
  if (d.action === 'deliver') {
    if (d.winner) parts.push(`winner ${d.winner.address}`)
    else if (r.race) parts.push('no winner: Haraka connects itself and hears the refusal')
    if (pending) parts.push(pending)
  } else {
    if (pending) parts.push(pending)
    parts.push(d.action)
  }
  return parts.join('; ') + andReason(d)
}

/** The reason a race that found no winner gives: every address with its error. */
export function describeRaceFailure(domain: string, race: RaceRecord): string {
  return `no MX address of ${domain} answered: ${describeFailures(race, race.untried)}`
}

/** Every filtered address with its reason: the text of a 4.4.4 deferral. */
export function describeUnusable(plan: Plan): string {
  return plan.filtered.length
    ? `no usable address for ${plan.domain}: ${describeFiltered(plan)}`
    : `no address records for the MX hosts of ${plan.domain}`
}
