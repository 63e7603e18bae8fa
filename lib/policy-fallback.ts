// The IPv6 sender-policy fallback, without Haraka: which sessions are watched, what a policy
// refusal on them becomes, and whether a deferral is the one a refusal caused (so the
// deferred hook retries it at once, over IPv4).

import type { MessageConnects } from './connects'
import type { RaceTarget } from './race'
import type { ReplyDecider } from './reply-filter'
import {
  matchPolicyRefusal,
  type NamedPattern,
  type PolicyRefusal,
  rewriteAsTemporary,
  type SessionStage,
} from './sender-policy'

const sameHost = (a: string, b: string): boolean => a.toLowerCase() === b.toLowerCase()

/**
 * Whether a session to `target` may fall back: it goes over IPv6, its MX host has IPv4
 * addresses in this message's plan, and this message was not switched for that host before.
 * Any other session is never filtered, so IPv4's replies always decide as in stock Haraka.
 */
export function mayFallBack(target: RaceTarget, record: MessageConnects): boolean {
  if (target.family !== 'ipv6') return false
  if (record.switchedBefore.some((h) => sameHost(h, target.exchange))) return false
  return record.targets.some((t) => t.family === 'ipv4' && sameHost(t.exchange, target.exchange))
}

/** Replies no message depends on: a refusal of them changes nothing. */
const IGNORED_STAGES: ReadonlySet<SessionStage> = new Set(['RSET', 'QUIT'])

/**
 * The decider for one watched session: a policy refusal is written to the message's record
 * (and passed to `onRefusal`); a 5xx one goes to Haraka as a 4xx so it defers instead of
 * bouncing. Everything else passes unchanged.
 */
export function policyDecider(
  target: RaceTarget,
  record: MessageConnects,
  patterns: readonly NamedPattern[],
  onRefusal: (refusal: PolicyRefusal) => void,
): ReplyDecider {
  return (reply, rawLines) => {
    if (IGNORED_STAGES.has(reply.stage)) return undefined
    const pattern = matchPolicyRefusal(reply, patterns)
    if (!pattern) return undefined
    const rewritten = reply.code >= 500
    const refusal: PolicyRefusal = {
      stage: reply.stage,
      reply: reply.lines.join(' '),
      address: target.address,
      exchange: target.exchange,
      ...(reply.recipient !== undefined ? { recipient: reply.recipient } : {}),
      pattern: pattern.name,
      rewritten,
      at: Date.now(),
    }
    record.refusals.push(refusal)
    onRefusal(refusal)
    return rewritten ? rewriteAsTemporary(rawLines) : undefined
  }
}

/** `<User@Example.com>` or an Address object's text → `user@example.com`. */
function mailbox(text: string): string {
  return text.trim().replace(/^<|>$/g, '').toLowerCase()
}

/**
 * The refusals a deferral answers, or none when it is not theirs: a deferral of recipients
 * (Haraka's "Some recipients temp failed") is theirs when every one of its recipients was
 * refused at RCPT by policy; a deferral of the whole message when a refusal came at another
 * stage. A deferral that mixes a policy refusal with another reason (a greylisting 451 for
 * another recipient) keeps Haraka's interval, so the other reason waits as it should.
 */
export function refusalsAnswered(
  record: MessageConnects,
  failedRecipients: readonly string[] | undefined,
): PolicyRefusal[] {
  const open = record.refusals.filter((r) => !r.answered)
  if (!open.length) return []
  if (failedRecipients?.length) {
    const atRcpt = open.filter((r) => r.stage === 'RCPT' && r.recipient !== undefined)
    const refusedFor = (rcpt: string): PolicyRefusal | undefined =>
      atRcpt.find((r) => mailbox(r.recipient as string) === mailbox(rcpt))
    const matched = failedRecipients.map(refusedFor)
    return matched.every((r) => r !== undefined) ? [...new Set(matched as PolicyRefusal[])] : []
  }
  return open.filter((r) => r.stage !== 'RCPT').slice(-1)
}

/** The RFC 3463 detail of a refusal's enhanced code (`5.7.25` → 25), for its 4.7.x DSN. */
export function refusalDetail(reply: string): number {
  const m = /^\d{3}[ -](?:[45])\.7\.(\d{1,3})\b/.exec(reply)
  return m ? Number(m[1]) : 0
}

/** Haraka's failed recipients as mailbox text. */
export function recipientsOf(list: unknown): string[] | undefined {
  if (!Array.isArray(list)) return undefined
  return list.map((r) => {
    const a = r as { address?: unknown } | null
    return typeof a?.address === 'function'
      ? String((a.address as () => unknown).call(a))
      : String(a?.address ?? r)
  })
}
