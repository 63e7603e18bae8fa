// The IPv6 sender-policy fallback's parts without Haraka: the refusal patterns, the rewrite of a
// 5xx, the reply filter on a socket, which deferral a refusal answers, the memory, and the
// per-destination family rules at planning.

import assert from 'node:assert/strict'
import { EventEmitter } from 'node:events'

import {
  DEFAULT_POLICY_PATTERNS,
  type PolicyRefusal,
  type ServerReply,
  matchPolicyRefusal,
  rewriteAsTemporary,
  compilePatterns,
  REWRITE_MARKER,
} from '../lib/sender-policy'
import { type FilterableSocket, filterReplies } from '../lib/reply-filter'
import { mayFallBack, policyDecider, recipientsOf, refusalsAnswered } from '../lib/policy-fallback'
import { PolicyMemory } from '../lib/policy-memory'
import { type FamilyRules, parseHostPattern, matchesHostPattern, familyPolicyFor } from '../lib/host-patterns'
import { type PlanOptions, planAddresses } from '../lib/plan'
import { MessageConnects } from '../lib/connects'
import { type Cidr, type FilterPolicy, type Family, parseCidr } from '../lib/classify'
import type { RaceTarget } from '../lib/race'
import type { MxHost } from '../lib/resolve'

const reply = (code: number, ...lines: string[]): Pick<ServerReply, 'code' | 'lines'> => ({ code, lines })

/** A reply as a test states it: its code, then its lines. */
type ReplyCase = [number, ...string[]]

describe('sender-policy patterns', () => {
  const refusals: ReplyCase[] = [
    [
      550,
      '550-5.7.1 [2001:db8::1] Our system has detected that this message does',
      '550-5.7.1 not meet IPv6 sending guidelines regarding PTR records and',
      '550 5.7.1 authentication.',
    ],
    [
      550,
      '550-5.7.25 The IP address sending this message does not have a PTR record setup,',
      '550 5.7.25 or the corresponding forward DNS entry does not point to the sending IP.',
    ],
    [421, '421-4.7.0 [2001:db8::1] This message does not have a PTR record', '421 4.7.0 for the sending IP.'],
    [421, '421 4.7.23 The sending IP address has no PTR record.'],
    [450, '450 4.7.25 Service unavailable, sending IPv6 address [2001:db8::1] must have reverse DNS record.'],
    [
      450,
      '450 4.7.26 Service unavailable, message sent over IPv6 [2001:db8::1] must pass either SPF or DKIM validation',
    ],
    [550, '550 5.2.1 contoso.com does not accept email over IPv6'],
    [550, '550 5.7.510 Access denied, contoso.com does not accept email over IPv6'],
  ]
  for (const [code, ...lines] of refusals) {
    it(`takes ${lines[0].slice(0, 40)}… as a policy refusal`, () => {
      assert.ok(matchPolicyRefusal(reply(code, ...lines), DEFAULT_POLICY_PATTERNS))
    })
  }
  const others: ReplyCase[] = [
    [550, '550 5.1.1 The email account that you tried to reach does not exist.'],
    [451, '451 4.7.1 Greylisted, please try again later'],
    [550, '550 5.7.1 Relaying denied'],
    [421, '421 4.7.0 Try again later, closing connection.'],
    [250, '250 2.0.0 OK IPv6 sending guidelines 5.7.1'],
  ]
  for (const [code, ...lines] of others) {
    it(`leaves ${lines[0]} alone`, () => {
      assert.equal(matchPolicyRefusal(reply(code, ...lines), DEFAULT_POLICY_PATTERNS), undefined)
    })
  }

  it('[policy] patterns[] entries are case-insensitive; a bad one is reported by name', () => {
    const { patterns, problems } = compilePatterns(['no ipv6 here', '('])
    assert.equal(patterns.length, 1)
    assert.ok(matchPolicyRefusal(reply(554, '554 No IPv6 here'), patterns))
    assert.equal(problems.length, 1)
    assert.match(problems[0], /\[policy\] patterns entry "\(" is not a regular expression/)
  })

  it('a 5xx becomes a 4xx on every line, enhanced codes too, text kept and marked on the last line', () => {
    assert.deepEqual(rewriteAsTemporary(['550-5.7.25 first\r\n', '550 5.7.25 last\r\n']), [
      '450-4.7.25 first\r\n',
      `450 4.7.25 last ${REWRITE_MARKER}\r\n`,
    ])
    assert.deepEqual(rewriteAsTemporary(['550 5.7.510 Access denied']), [
      `450 4.7.510 Access denied ${REWRITE_MARKER}`,
    ])
  })
})

/** A socket stand-in: records what is written, emits 'line' events like Haraka's line processor. */
class FakeSocket extends EventEmitter implements FilterableSocket {
  written: string[] = []
  write = (chunk: unknown): boolean => {
    this.written.push(String(chunk))
    return true
  }
}

function fakeSocket(): FakeSocket {
  return new FakeSocket()
}

describe('the reply filter', () => {
  it('offers each whole reply with the stage it answers, and passes continuation lines with it', () => {
    const s = fakeSocket()
    const seen: Array<[string, number, number, string | undefined]> = []
    const got: string[] = []
    filterReplies(s, (r) => void seen.push([r.stage, r.code, r.lines.length, r.recipient]))
    s.on('line', (l: string) => got.push(l))
    s.emit('line', '220-hello\r\n')
    assert.deepEqual(got, [], 'a continuation line waits for its reply')
    s.emit('line', '220 ready\r\n')
    s.write('EHLO me\r\n')
    s.emit('line', '250 ok\r\n')
    s.write('MAIL FROM:<a@b>\r\n')
    s.emit('line', '250 ok\r\n')
    s.write('RCPT TO:<x@y.test>\r\n')
    s.emit('line', '250 ok\r\n')
    s.write('DATA\r\n')
    s.emit('line', '354 go\r\n')
    s.write('RCPT TO:<not a command, message data>\r\n')
    s.write('.\r\n')
    s.emit('line', '250 queued\r\n')
    assert.deepEqual(seen, [
      ['greeting', 220, 2, undefined],
      ['EHLO', 250, 1, undefined],
      ['MAIL', 250, 1, undefined],
      ['RCPT', 250, 1, 'x@y.test'],
      ['DATA', 354, 1, undefined],
      ['end of DATA', 250, 1, undefined],
    ])
    assert.equal(got.length, 7)
  })

  it('offers only the replies asked for, passing the others as they came, and still follows the stage', () => {
    const s = fakeSocket()
    const seen: Array<[string, number, number]> = []
    const got: unknown[] = []
    filterReplies(
      s,
      (r) => void seen.push([r.stage, r.code, r.lines.length]),
      undefined,
      (code) => code >= 400,
    )
    s.on('line', (l: unknown) => got.push(l))
    s.emit('line', '220-hello\r\n')
    s.emit('line', '220 ready\r\n')
    s.write('EHLO me\r\n')
    s.emit('line', '250 ok\r\n')
    s.write('DATA\r\n')
    s.emit('line', '354 go\r\n')
    s.write('RCPT TO:<not a command, message data>\r\n')
    s.write('.\r\n')
    s.emit('line', '451-4.7.1 later\r\n')
    s.emit('line', '451 4.7.1 really\r\n')
    assert.deepEqual(seen, [['end of DATA', 451, 2]])
    assert.deepEqual(got, [
      '220-hello\r\n',
      '220 ready\r\n',
      '250 ok\r\n',
      '354 go\r\n',
      '451-4.7.1 later\r\n',
      '451 4.7.1 really\r\n',
    ])
  })

  it('a decider that throws passes the reply unchanged', () => {
    const s = fakeSocket()
    const got: string[] = []
    const errors: unknown[] = []
    filterReplies(
      s,
      () => {
        throw new Error('boom')
      },
      (e) => errors.push(e),
    )
    s.on('line', (l: string) => got.push(l))
    s.emit('line', '550 no\r\n')
    assert.deepEqual(got, ['550 no\r\n'])
    assert.equal(errors.length, 1)
  })
})

const target = (family: Family, address: string, exchange = 'mx.example.test'): RaceTarget => ({
  address,
  family,
  exchange,
  preference: 10,
  port: 25,
})

describe('the fallback decision', () => {
  function record(): MessageConnects {
    const r = new MessageConnects('example.test')
    r.targets = [target('ipv6', '2001:db8::1'), target('ipv4', '192.0.2.1')]
    return r
  }

  it('watches IPv6 sessions to hosts with IPv4 in the plan, not switched before; never IPv4 ones', () => {
    const r = record()
    assert.equal(mayFallBack(r.targets[0], r), true)
    assert.equal(mayFallBack(r.targets[1], r), false)
    r.switchedBefore = ['MX.example.test']
    assert.equal(mayFallBack(r.targets[0], r), false)
    const v6only = new MessageConnects('example.test')
    v6only.targets = [target('ipv6', '2001:db8::1')]
    assert.equal(mayFallBack(v6only.targets[0], v6only), false)
  })

  it('a 5xx policy refusal is recorded and rewritten; a 4xx one recorded only; a 5.1.1 neither', () => {
    const r = record()
    const seen: PolicyRefusal[] = []
    const decide = policyDecider(r.targets[0], r, DEFAULT_POLICY_PATTERNS, (x) => seen.push(x))
    const raw = ['550 5.7.25 no PTR record for you\r\n']
    const out = decide({ stage: 'RCPT', code: 550, lines: [raw[0].trim()], recipient: 'a@example.test' }, raw)
    assert.match(out?.[0] ?? '', /^450 4\.7\.25 no PTR record/)
    assert.equal(
      decide({ stage: 'MAIL', code: 450, lines: ['450 4.7.25 IPv6 address must have reverse DNS'] }, []),
      undefined,
    )
    assert.equal(decide({ stage: 'RCPT', code: 550, lines: ['550 5.1.1 no such user'] }, []), undefined)
    assert.deepEqual(
      r.refusals.map((x) => [x.stage, x.rewritten, x.recipient]),
      [
        ['RCPT', true, 'a@example.test'],
        ['MAIL', false, undefined],
      ],
    )
    assert.equal(seen.length, 2)
  })

  it('a recipients deferral is answered only when every recipient was refused by policy', () => {
    const r = record()
    r.refusals.push({
      stage: 'RCPT',
      recipient: 'A@example.test',
      reply: '',
      address: '',
      exchange: '',
      pattern: '',
      rewritten: true,
      at: 0,
    })
    assert.equal(
      refusalsAnswered(r, ['<a@example.test>', 'b@example.test']).length,
      0,
      'mixed with another reason',
    )
    assert.equal(refusalsAnswered(r, ['<a@example.test>']).length, 1)
    assert.equal(refusalsAnswered(r, undefined).length, 0, 'a whole-message deferral is not an RCPT refusal')
    r.refusals[0].answered = true
    assert.equal(refusalsAnswered(r, ['a@example.test']).length, 0, 'once only')
  })
})

describe('policy memory', () => {
  it('remembers a host case-insensitively for its TTL, and nothing with ttl 0', () => {
    let now = 1
    const m = new PolicyMemory({ ttlMs: 1000, maxEntries: 10, perf: { now: () => now } })
    m.remember('MX.Example.test.', 'refused', 5000)
    assert.equal(m.ipv6Refused('mx.example.test')?.until, 6000)
    now = 1002
    assert.equal(m.ipv6Refused('mx.example.test'), undefined)
    const off = new PolicyMemory({ ttlMs: 0, maxEntries: 10 })
    off.remember('mx.example.test', 'refused')
    assert.equal(off.ipv6Refused('mx.example.test'), undefined)
  })
})

describe('family rules', () => {
  it('patterns: a name, or *.name for names below it only; case-insensitive; IDN to A-label', () => {
    assert.equal(parseHostPattern('*.Google.COM.'), '*.google.com')
    assert.equal(parseHostPattern('bücher.example'), 'xn--bcher-kva.example')
    for (const bad of ['*', '*.', '192.0.2.1', 'a_b.test', '**.x.test'])
      assert.equal(parseHostPattern(bad), undefined, bad)
    assert.ok(matchesHostPattern('ALT1.aspmx.l.google.com', '*.google.com'))
    assert.ok(!matchesHostPattern('google.com', '*.google.com'))
    assert.ok(!matchesHostPattern('notgoogle.com', '*.google.com'))
    assert.ok(matchesHostPattern('gmail.com.', 'gmail.com'))
  })

  it('ipv4_only and ipv6_only together leave nothing; two prefer rules cancel out', () => {
    const p = familyPolicyFor('example.test', 'mx.example.test', {
      ipv4Only: ['example.test'],
      ipv6Only: ['*.example.test'],
      preferIpv4: ['example.test'],
      preferIpv6: ['mx.example.test'],
    })
    assert.deepEqual([...p.excluded.keys()].sort(), ['ipv4', 'ipv6'])
    assert.equal(p.prefer, undefined)
  })

  // Both ranges are valid CIDRs: parseCidr answers null only for bad text.
  const allowAll: FilterPolicy = {
    allow: [parseCidr('2001:db8::/32'), parseCidr('192.0.2.0/24')] as Cidr[],
    blockCidrs: [],
    blockRanges: new Set(),
  }
  const hosts: MxHost[] = [
    { exchange: 'mx.example.test', preference: 10, addresses: ['2001:db8::1', '192.0.2.1'], errors: [] },
  ]
  const opts = (extra: Partial<PlanOptions>): PlanOptions => ({
    policy: allowAll,
    prefer: 'ipv6',
    firstFamilyCount: 1,
    maxAddresses: 16,
    random: () => 0,
    ...extra,
  })
  const rules = (r: Partial<FamilyRules>): FamilyRules => ({
    ipv4Only: [],
    ipv6Only: [],
    preferIpv4: [],
    preferIpv6: [],
    ...r,
  })

  it('planning: an _only rule files the other family under filtered with the rule', () => {
    const plan = planAddresses(
      'example.test',
      hosts,
      opts({ family: rules({ ipv4Only: ['*.example.test'] }) }),
    )
    assert.deepEqual(
      plan.kept.map((c) => c.address),
      ['192.0.2.1'],
    )
    assert.deepEqual(plan.filtered, [
      {
        exchange: 'mx.example.test',
        address: '2001:db8::1',
        reason: 'family policy ipv4_only (*.example.test)',
      },
    ])
  })

  it('planning: prefer_ipv4 leads with IPv4 and keeps IPv6', () => {
    const plan = planAddresses(
      'example.test',
      hosts,
      opts({ family: rules({ preferIpv4: ['example.test'] }) }),
    )
    assert.deepEqual(
      plan.kept.map((c) => c.address),
      ['192.0.2.1', '2001:db8::1'],
    )
  })

  it('planning: a remembered refusal leaves IPv6 out while the host has IPv4, and only then', () => {
    const senderPolicy = { ipv6Refused: () => ({ refusal: 'x', until: Date.UTC(2030, 0, 1) }) }
    const plan = planAddresses('example.test', hosts, opts({ senderPolicy }))
    assert.deepEqual(
      plan.kept.map((c) => c.address),
      ['192.0.2.1'],
    )
    assert.equal(plan.filtered[0].reason, 'IPv6 refused by policy (until 2030-01-01T00:00:00Z)')
    const v6only = [{ ...hosts[0], addresses: ['2001:db8::1'] }]
    assert.deepEqual(
      planAddresses('example.test', v6only, opts({ senderPolicy })).kept.map((c) => c.address),
      ['2001:db8::1'],
    )
    const switched = planAddresses(
      'example.test',
      hosts,
      opts({ switched: [{ exchange: 'MX.example.test', refusal: 'x', at: 0 }] }),
    )
    assert.equal(switched.filtered[0].reason, 'IPv6 refused by policy for this message')
  })
})

describe("Haraka's failed recipients as mailboxes", () => {
  it('reads address-rfc2821 Address objects, plain {address} objects and strings alike', () => {
    const parsed = { address: () => 'a@example.test' }
    assert.deepEqual(recipientsOf([parsed, { address: 'b@example.test' }, 'c@example.test']), [
      'a@example.test',
      'b@example.test',
      'c@example.test',
    ])
  })

  it('no list is no recipients named', () => {
    assert.equal(recipientsOf(undefined), undefined)
    assert.equal(recipientsOf('a@example.test'), undefined)
  })
})
