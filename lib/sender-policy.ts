// SMTP replies that refuse a sender for coming over IPv6 (no PTR record, IPv6 sending
// guidelines, a tenant that takes no IPv6): the texts that say so, and what the plugin does
// with such a reply on an IPv6 session it planned. Every other reply is left as it is.

/** Where in the session a reply came: the greeting, or the reply to the command sent. */
export type SessionStage =
  | 'greeting'
  | 'EHLO'
  | 'HELO'
  | 'LHLO'
  | 'STARTTLS'
  | 'AUTH'
  | 'MAIL'
  | 'RCPT'
  | 'DATA'
  | 'end of DATA'
  | 'RSET'
  | 'QUIT'

/** One complete server reply: every line of it, the code of its last line. */
export interface ServerReply {
  stage: SessionStage
  code: number
  /** The lines as received, without line endings. */
  lines: string[]
  /** For a reply to RCPT: the recipient as sent (`user@example.com`). */
  recipient?: string
}

export interface NamedPattern {
  name: string
  re: RegExp
}

/**
 * The providers' own texts (REPLIES.md): each names its enhanced status code and the words that
 * make it about IPv6 or the sender's PTR record, so `550 5.1.1` or a greylisting `451 4.7.1`
 * never match. Matched against the whole reply, its lines joined by newlines.
 */
export const DEFAULT_POLICY_PATTERNS: readonly NamedPattern[] = [
  { name: 'Gmail 5.7.1 IPv6 sending guidelines', re: /\b5\.7\.1\b[\s\S]*\bIPv6 sending guidelines\b/i },
  { name: 'Gmail 5.7.25 PTR record', re: /\b5\.7\.25\b[\s\S]*\bPTR record/i },
  { name: 'Gmail 421 4.7.0 PTR', re: /^421[ -]4\.7\.0\b[\s\S]*\bPTR\b/i },
  { name: 'Gmail 421 4.7.23', re: /^421[ -]4\.7\.23\b/i },
  {
    name: 'Microsoft 450 4.7.25 IPv6 reverse DNS',
    re: /^450[ -]4\.7\.25\b[\s\S]*\b(?:IPv6|reverse DNS)\b/i,
  },
  { name: 'Microsoft 450 4.7.26 IPv6 SPF or DKIM', re: /^450[ -]4\.7\.26\b[\s\S]*\b(?:IPv6|SPF|DKIM)\b/i },
  { name: 'Microsoft 5.2.1 no email over IPv6', re: /\b5\.2\.1\b[\s\S]*\bover IPv6\b/i },
  { name: 'Microsoft 5.7.510 IPv6', re: /\b5\.7\.510\b[\s\S]*\bIPv6\b/i },
]

/** `[policy] patterns[]` entries as case-insensitive regular expressions; a bad one is reported. */
export function compilePatterns(sources: readonly string[]): {
  patterns: NamedPattern[]
  problems: string[]
} {
  const patterns: NamedPattern[] = []
  const problems: string[] = []
  for (const source of sources) {
    try {
      patterns.push({ name: `[policy] patterns ${source}`, re: new RegExp(source, 'i') })
    } catch (err) {
      problems.push(
        `[policy] patterns entry ${JSON.stringify(source)} is not a regular expression (${String(err instanceof Error ? err.message : err)}); ignored`,
      )
    }
  }
  return { patterns, problems }
}

/** Whether a reply code can be a policy refusal at all: a 4xx or 5xx. */
export const mayBePolicyRefusal = (code: number): boolean => code >= 400 && code <= 599

/** The first pattern a refusal (4xx or 5xx) matches, or undefined. */
export function matchPolicyRefusal(
  reply: Pick<ServerReply, 'code' | 'lines'>,
  patterns: readonly NamedPattern[],
): NamedPattern | undefined {
  if (!mayBePolicyRefusal(reply.code)) return undefined
  const text = reply.lines.join('\n')
  return patterns.find((p) => p.re.test(text))
}

/** What the reply's text gets so a reader of a log or DSN sees it was turned into a 4xx. */
export const REWRITE_MARKER = '[5xx taken as 4xx: IPv6 sender policy, retrying over IPv4]'

/**
 * A 5xx policy refusal as a 4xx with the server's text and the marker: every line's code and a
 * leading `5.x.x` become `4…`, so Haraka temp-fails instead of bouncing. Line endings are kept.
 */
export function rewriteAsTemporary(rawLines: readonly string[]): string[] {
  return rawLines.map((raw, i) => {
    const m = /^(5)(\d\d)([ -])(?:5(\.\d{1,3}\.\d{1,3}\b))?(.*?)(\r?\n)?$/s.exec(raw)
    if (!m) return raw
    const [, , rest, sep, ext, text, eol] = m
    const last = i === rawLines.length - 1
    return `4${rest}${sep}${ext ? `4${ext}` : ''}${text}${last ? ` ${REWRITE_MARKER}` : ''}${eol ?? ''}`
  })
}

/** One refusal, as the message's record keeps it and the explanations name it. */
export interface PolicyRefusal {
  stage: SessionStage
  /** The server's reply as received, lines joined by a space. */
  reply: string
  address: string
  exchange: string
  recipient?: string
  /** Which pattern matched. */
  pattern: string
  /** The 5xx was handed to Haraka as a 4xx. */
  rewritten: boolean
  /** Epoch ms. */
  at: number
  /** Set once the deferred hook answered for it: one immediate retry per refusal. */
  answered?: boolean
}

const showAddress = (a: string): string => (a.includes(':') ? `[${a}]` : a)

/** `IPv6 refused by policy at mx.example [2001:db8::1] at RCPT: 550 5.7.25 …` */
export function describeRefusal(r: Pick<PolicyRefusal, 'exchange' | 'address' | 'stage' | 'reply'>): string {
  return `IPv6 refused by policy at ${r.exchange} ${showAddress(r.address)} (${r.stage}): ${r.reply}`
}

/**
 * The note in `hmail.todo.notes` (persisted with the queue file when Haraka writes one) that
 * holds the MX hosts this message was switched to IPv4 for, each with the refusal that did it:
 * at most one switch per host and message, whatever the in-process memory says.
 */
export const SWITCH_NOTE = 'happy_eyeballs_ipv4_only'

export interface SwitchedHost {
  exchange: string
  refusal: string
  at: number
}

/** The switched hosts in a todo.notes object; anything unreadable counts as none. */
export function switchedHosts(notes: unknown): SwitchedHost[] {
  const list =
    notes && typeof notes === 'object' ? (notes as Record<string, unknown>)[SWITCH_NOTE] : undefined
  if (!Array.isArray(list)) return []
  return list.filter(
    (s): s is SwitchedHost =>
      Boolean(s) && typeof s === 'object' && typeof (s as SwitchedHost).exchange === 'string',
  )
}

/** Adds a host to the note, once. */
export function noteSwitch(notes: Record<string, unknown>, host: SwitchedHost): void {
  const list = switchedHosts(notes)
  if (list.some((s) => s.exchange === host.exchange)) return
  notes[SWITCH_NOTE] = [...list, host]
}
