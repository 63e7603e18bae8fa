'use strict'

// IPv6 sender-policy refusals and the per-destination family policy, end to end: real Haraka
// 3.3.4 and 3.0.3 processes, a DNS server and two SMTP sinks on loopback, [::1]:25 and
// 127.0.0.1:25, each refusing where a scenario asks it to. Every scenario's MX host has one
// AAAA (::1) and one A (127.0.0.1). Stock Haraka (no plugin) runs the same refusals, for the
// comparison. POLICY_REPORT=1 prints each scenario's outcome and time.

const assert = require('node:assert/strict')

const fixtures = require('haraka-test-fixtures')
const { SMTPServer } = require('smtp-server')

const { startHaraka, sendMail, waitForOutcome, queuedUuid } = require('../../support')

// Every scenario's IPv6 address is ::1: no connect outcome of one scenario may reorder the
// next (a race that fails ::1 at its greeting would demote ::1 for every later MX host).
const PLUGIN_INI = '[filter]\nallow[]=127.0.0.0/8\nallow[]=::1/128\n[cache]\nttl_s=0\n'

const GMAIL_PTR = '5.7.25 [::1] The IP address sending this message does not have a PTR record setup'
const GMAIL_GUIDELINES =
  '5.7.1 [::1] Our system has detected that this message does not meet IPv6 sending guidelines regarding PTR records and authentication'
const MS_RDNS = '4.7.25 Service unavailable, sending IPv6 address [::1] must have reverse DNS record.'
const GMAIL_GREETING_PTR = '4.7.0 [::1] Our system has detected that this message does not have a PTR record'

const report = []

/**
 * A recording sink on `host`:25 whose replies a scenario sets: `refuse` is
 * `{ stage: 'greeting'|'mail'|'rcpt'|'data', code, text }` ('data' is the reply to the final dot).
 */
async function startPolicySink(host) {
  const sink = { host, refuse: null, connections: 0, messages: [], refusals: [] }
  const refusal = (stage) => {
    const r = sink.refuse
    if (!r || r.stage !== stage) return null
    sink.refusals.push(stage)
    return Object.assign(new Error(r.text), { responseCode: r.code })
  }
  const server = new SMTPServer({
    name: 'sink.test',
    authOptional: true,
    disabledCommands: ['AUTH', 'STARTTLS'],
    disableReverseLookup: true,
    logger: false,
    closeTimeout: 1000,
    socketTimeout: 30000,
    onConnect(session, cb) {
      cb(refusal('greeting'))
    },
    onMailFrom(address, session, cb) {
      cb(refusal('mail'))
    },
    onRcptTo(address, session, cb) {
      const only = sink.refuse?.recipient
      cb(only && only !== address.address ? null : refusal('rcpt'))
    },
    onData(stream, session, cb) {
      const chunks = []
      stream.on('data', (c) => chunks.push(c))
      stream.on('end', () => {
        const err = refusal('data')
        if (err) return cb(err)
        sink.messages.push({
          to: session.envelope.rcptTo.map((r) => r.address),
          data: Buffer.concat(chunks).toString('utf8'),
        })
        cb(null, 'accepted')
      })
    },
  })
  server.on('error', () => {})
  server.server.on('connection', () => sink.connections++)
  await new Promise((resolve, reject) => {
    server.server.once('error', reject)
    server.server.listen({ host, port: 25 }, resolve)
  })
  sink.waitFor = (check, timeoutMs = 20000) =>
    new Promise((resolve, reject) => {
      const started = Date.now()
      const poll = () => {
        if (check()) return resolve()
        if (Date.now() - started > timeoutMs) return reject(new Error(`sink ${host}: condition not met`))
        setTimeout(poll, 20)
      }
      poll()
    })
  sink.reset = () => {
    sink.refuse = null
    sink.connections = 0
    sink.messages = []
    sink.refusals = []
  }
  sink.close = () => new Promise((resolve) => server.close(resolve))
  return sink
}

const VERSIONS = ['3.3.4', '3.0.3']

describe('IPv6 sender-policy refusals and family policy, end to end', function () {
  this.timeout(90000)

  let dns = null
  let v6 = null
  let v4 = null
  let zones = 0

  /** A fresh destination: its own domain and MX host, so no memory of another scenario counts. */
  function destination({ aaaa = ['::1'], a = ['127.0.0.1'] } = {}) {
    zones++
    const domain = `p${zones}.test`
    const mx = `mx.${domain}`
    dns.setZone(domain, { mx: [{ preference: 10, exchange: mx }] })
    dns.setZone(mx, { ...(aaaa.length ? { aaaa } : {}), ...(a.length ? { a } : {}) })
    return { domain, mx, rcpt: `rcpt@${domain}` }
  }

  before(async function () {
    dns = await fixtures.dns.start({})
    v6 = await startPolicySink('::1')
    v4 = await startPolicySink('127.0.0.1')
  })
  after(async function () {
    await v6?.close()
    await v4?.close()
    await dns?.close()
    if (process.env.POLICY_REPORT) {
      for (const r of report) console.log(`${r.who}\t${r.scenario}\t${r.outcome}\t${r.ms} ms`)
    }
  })
  beforeEach(() => {
    v6.reset()
    v4.reset()
  })

  async function deliver(h, to, label) {
    const from = h.logLength()
    const started = performance.now()
    const info = await sendMail({ port: h.port, to })
    const uuid = queuedUuid(info)
    let outcome = await waitForOutcome(h, 60000, { from, uuid })
    // The immediate retry of a policy refusal: its outcome is the one that counts.
    for (let retries = 0; outcome.kind === 'deferred' && outcome.delay === 0 && retries < 3; retries++)
      outcome = await waitForOutcome(h, 60000, { from: outcome.offset + outcome.line.length, uuid })
    const ms = Math.round(performance.now() - started)
    report.push({ who: label, scenario: '', outcome: `${outcome.kind} ${outcome.ip ?? ''}`.trim(), ms })
    return { outcome, uuid, from, ms, log: () => h.log().slice(from) }
  }

  const note = (scenario) => {
    report.at(-1).scenario = scenario
  }

  for (const version of VERSIONS) {
    describe(`Haraka ${version} with the plugin`, function () {
      let h = null
      before(async function () {
        h = await startHaraka({
          version,
          dnsPort: dns.port,
          plugins: ['happy-eyeballs'],
          files: { 'happy_eyeballs.ini': PLUGIN_INI },
        })
      })
      after(async function () {
        await h?.stop()
      })
      const label = `${version} plugin`

      it('550 5.7.25 at RCPT over IPv6: delivered over IPv4, the refusal named on the delivery', async function () {
        const d = destination()
        v6.refuse = { stage: 'rcpt', code: 550, text: GMAIL_PTR }
        const r = await deliver(h, d.rcpt, label)
        note('5.7.25 at RCPT')
        assert.equal(r.outcome.kind, 'delivered', r.outcome.line)
        assert.equal(r.outcome.ip, '127.0.0.1')
        assert.deepEqual(v6.refusals, ['rcpt'])
        assert.equal(v6.messages.length, 0)
        assert.equal(v4.messages.length, 1)
        assert.deepEqual(v4.messages[0].to, [d.rcpt])
        await h.waitForLog(/delivered over IPv4 \(127\.0\.0\.1\)/, 10000, { from: r.from })
        const log = r.log()
        assert.match(
          log,
          new RegExp(
            `IPv6 refused by policy at ${d.mx.replace(/\./g, '\\.')} \\[::1\\] \\(RCPT\\): 550 5\\.7\\.25`,
          ),
        )
        assert.match(
          log,
          /Temp failing \S+ for 0 seconds: IPv6 refused by policy .*retrying over IPv4 at once/,
        )
        assert.doesNotMatch(log, /bouncing mail/)
      })

      it('two recipients, one refused at RCPT by policy: it alone is retried over IPv4, nobody twice', async function () {
        const d = destination()
        const [refused, accepted] = [`refused@${d.domain}`, `accepted@${d.domain}`]
        v6.refuse = { stage: 'rcpt', code: 550, text: GMAIL_PTR, recipient: refused }
        const from = h.logLength()
        const info = await sendMail({ port: h.port, to: [refused, accepted] })
        const uuid = queuedUuid(info)
        await v4.waitFor(() => v4.messages.length >= 1)
        await h.waitForLog(/delivered over IPv4/, 10000, { from })
        report.push({
          who: label,
          scenario: 'two recipients, one refused at RCPT',
          outcome: 'both delivered',
          ms: 0,
        })
        assert.deepEqual(
          v6.messages.map((m) => m.to),
          [[accepted]],
        )
        assert.deepEqual(
          v4.messages.map((m) => m.to),
          [[refused]],
        )
        const delivered = h
          .log()
          .slice(from)
          .match(new RegExp(`\\[${uuid.split('.')[0]}[^\\]]*\\] \\[outbound\\]\\s+delivered`, 'g'))
        assert.equal(delivered.length, 2)
      })

      it('the next message to that MX host goes to IPv4 first, with no IPv6 session', async function () {
        const d = destination()
        v6.refuse = { stage: 'rcpt', code: 550, text: GMAIL_PTR }
        await deliver(h, d.rcpt, label)
        note('(first message, to remember)')
        v6.reset()
        v4.reset()
        const r = await deliver(h, `other@${d.domain}`, label)
        note('next message to a remembered host')
        assert.equal(r.outcome.kind, 'delivered', r.outcome.line)
        assert.equal(r.outcome.ip, '127.0.0.1')
        assert.equal(v6.connections, 0, 'no IPv6 session')
        assert.match(
          r.log(),
          /::1 of mx\.p\d+\.test: IPv6 refused by policy \(until \d{4}-\d\d-\d\dT[\d:]+Z\)/,
        )
      })

      it('550 5.7.1 at the end of DATA: delivered over IPv4 exactly once, never accepted over IPv6', async function () {
        const d = destination()
        v6.refuse = { stage: 'data', code: 550, text: GMAIL_GUIDELINES }
        const r = await deliver(h, d.rcpt, label)
        note('5.7.1 at end of DATA')
        assert.equal(r.outcome.kind, 'delivered', r.outcome.line)
        assert.equal(r.outcome.ip, '127.0.0.1')
        assert.deepEqual(v6.refusals, ['data'])
        assert.equal(v6.messages.length, 0)
        // A later message delivered after it: by then a second delivery of the first would show.
        const later = destination()
        v6.refuse = null
        await deliver(h, later.rcpt, label)
        note('(a later message)')
        assert.equal(v4.messages.filter((m) => m.to.includes(d.rcpt)).length, 1)
        const deliveries = h
          .log()
          .match(new RegExp(`\\[${r.uuid.replace(/\./g, '\\.')}[^\\]]*\\] \\[outbound\\]\\s+delivered`, 'g'))
        assert.equal(deliveries.length, 1)
      })

      it('450 4.7.25 at MAIL over IPv6: delivered over IPv4 at once, not after the retry interval', async function () {
        const d = destination()
        v6.refuse = { stage: 'mail', code: 450, text: MS_RDNS }
        const r = await deliver(h, d.rcpt, label)
        note('450 4.7.25 at MAIL')
        assert.equal(r.outcome.kind, 'delivered', r.outcome.line)
        assert.equal(r.outcome.ip, '127.0.0.1')
        assert.deepEqual(v6.refusals, ['mail'])
        assert.match(
          r.log(),
          /Temp failing \S+ for 0 seconds: IPv6 refused by policy .*\(MAIL\): 450 4\.7\.25/,
        )
      })

      it('421 4.7.0 PTR as the greeting over IPv6: the greeting race moves to IPv4 at once', async function () {
        const d = destination()
        v6.refuse = { stage: 'greeting', code: 421, text: GMAIL_GREETING_PTR }
        const r = await deliver(h, d.rcpt, label)
        note('421 4.7.0 greeting')
        assert.equal(r.outcome.kind, 'delivered', r.outcome.line)
        assert.equal(r.outcome.ip, '127.0.0.1')
        assert.deepEqual(v6.refusals, ['greeting'])
        assert.match(r.log(), /race \+\d+ms \[::1\]:25 failed \(greeting 421 4\.7\.0 /)
        assert.doesNotMatch(r.log(), /Temp failing/)
      })

      it('IPv4 refusing too: IPv4 reply decides (bounce), one switch only', async function () {
        const d = destination()
        v6.refuse = { stage: 'rcpt', code: 550, text: GMAIL_PTR }
        v4.refuse = { stage: 'rcpt', code: 550, text: '5.7.1 Message rejected by local policy' }
        const r = await deliver(h, d.rcpt, label)
        note('IPv6 5.7.25 then IPv4 550 5.7.1')
        assert.equal(r.outcome.kind, 'bounced', r.outcome.line)
        assert.match(r.outcome.err, /Some recipients failed/)
        assert.deepEqual(v6.refusals, ['rcpt'])
        assert.deepEqual(v4.refusals, ['rcpt'])
        assert.equal(v6.connections, 1)
        assert.equal(v4.connections, 1)
        assert.match(
          r.log(),
          /recipient <rcpt@p\d+\.test> rejected: 550 5\.7\.1 Message rejected by local policy/,
        )
      })

      it('a genuine 550 5.1.1 over IPv6 bounces as in stock, with no IPv4 session', async function () {
        const d = destination()
        v6.refuse = {
          stage: 'rcpt',
          code: 550,
          text: '5.1.1 The email account that you tried to reach does not exist',
        }
        const r = await deliver(h, d.rcpt, label)
        note('genuine 550 5.1.1')
        assert.equal(r.outcome.kind, 'bounced', r.outcome.line)
        assert.equal(v4.connections, 0)
        assert.doesNotMatch(r.log(), /IPv6 refused by policy/)
      })

      it('a greylisting 451 over IPv6 waits its interval as in stock', async function () {
        const d = destination()
        v6.refuse = { stage: 'rcpt', code: 451, text: '4.7.1 Greylisted, please try again later' }
        const r = await deliver(h, d.rcpt, label)
        note('greylisting 451 4.7.1')
        assert.equal(r.outcome.kind, 'deferred', r.outcome.line)
        assert.ok(r.outcome.delay > 0, r.outcome.line)
        assert.equal(v4.connections, 0)
      })
    })

    describe(`Haraka ${version} with the plugin: family policy`, function () {
      const hs = []
      after(async function () {
        for (const h of hs.splice(0)) await h.stop()
      })
      async function haraka(ini) {
        const h = await startHaraka({
          version,
          dnsPort: dns.port,
          plugins: ['happy-eyeballs'],
          files: { 'happy_eyeballs.ini': `${PLUGIN_INI}${ini}` },
        })
        hs.push(h)
        return h
      }
      const label = `${version} plugin`

      it('ipv4_only by MX host pattern: IPv4 only, IPv6 filtered with the rule named', async function () {
        const d = destination()
        const h = await haraka(`[family]\nipv4_only[]=*.${d.domain}\n`)
        const r = await deliver(h, d.rcpt, label)
        note('ipv4_only[]=*.domain')
        assert.equal(r.outcome.kind, 'delivered', r.outcome.line)
        assert.equal(r.outcome.ip, '127.0.0.1')
        assert.equal(v6.connections, 0)
        assert.match(
          r.log(),
          new RegExp(
            `::1 of ${d.mx.replace(/\./g, '\\.')}: family policy ipv4_only \\(\\*\\.${d.domain.replace(/\./g, '\\.')}\\)`,
          ),
        )
      })

      it('ipv6_only by recipient domain: IPv6 only', async function () {
        const d = destination()
        const h = await haraka(`[family]\nipv6_only[]=${d.domain.toUpperCase()}\n`)
        const r = await deliver(h, d.rcpt, label)
        note('ipv6_only[]=domain')
        assert.equal(r.outcome.kind, 'delivered', r.outcome.line)
        assert.equal(r.outcome.ip, '::1')
        assert.equal(v4.connections, 0)
      })

      it('prefer_ipv4: IPv4 leads the group, IPv6 stays in the plan', async function () {
        const d = destination()
        const h = await haraka(`[family]\nprefer_ipv4[]=${d.mx}\n`)
        const r = await deliver(h, d.rcpt, label)
        note('prefer_ipv4[]=mx host')
        assert.equal(r.outcome.kind, 'delivered', r.outcome.line)
        assert.equal(r.outcome.ip, '127.0.0.1')
        assert.match(
          r.log(),
          new RegExp(
            `try ${d.mx.replace(/\./g, '\\.')} 127\\.0\\.0\\.1, ${d.mx.replace(/\./g, '\\.')} \\[::1\\]`,
          ),
        )
      })

      it('no address of the allowed family: defers 4.4.4 naming the policy', async function () {
        const d = destination({ aaaa: [] })
        const h = await haraka(`[family]\nipv6_only[]=${d.domain}\n`)
        const r = await deliver(h, d.rcpt, label)
        note('ipv6_only, host has only A')
        assert.equal(r.outcome.kind, 'deferred', r.outcome.line)
        assert.equal(
          r.outcome.err,
          `no usable address for ${d.domain}: 127.0.0.1 of ${d.mx}: family policy ipv6_only (${d.domain})`,
        )
        assert.equal(v4.connections + v6.connections, 0)
      })
    })

    describe(`Haraka ${version} without the plugin (stock), the same refusals`, function () {
      let h = null
      before(async function () {
        // 3.0.x uses AAAA records only with ipv6_enabled; 3.3.4 always does.
        h = await startHaraka({
          version,
          dnsPort: dns.port,
          outbound: version === '3.0.3' ? { ipv6_enabled: true } : {},
        })
      })
      after(async function () {
        await h?.stop()
      })
      const label = `${version} stock`

      it('550 5.7.25 at RCPT over IPv6: stock bounces it', async function () {
        const d = destination()
        v6.refuse = { stage: 'rcpt', code: 550, text: GMAIL_PTR }
        const r = await deliver(h, d.rcpt, label)
        note('5.7.25 at RCPT')
        assert.equal(r.outcome.kind, 'bounced', r.outcome.line)
        assert.equal(v4.connections, 0)
      })

      it('550 5.7.1 at the end of DATA over IPv6: stock bounces it', async function () {
        const d = destination()
        v6.refuse = { stage: 'data', code: 550, text: GMAIL_GUIDELINES }
        const r = await deliver(h, d.rcpt, label)
        note('5.7.1 at end of DATA')
        assert.equal(r.outcome.kind, 'bounced', r.outcome.line)
        assert.equal(v4.connections, 0)
      })

      it('450 4.7.25 at MAIL over IPv6: stock defers for its retry interval', async function () {
        const d = destination()
        v6.refuse = { stage: 'mail', code: 450, text: MS_RDNS }
        const r = await deliver(h, d.rcpt, label)
        note('450 4.7.25 at MAIL')
        assert.equal(r.outcome.kind, 'deferred', r.outcome.line)
        assert.ok(r.outcome.delay > 0, r.outcome.line)
        assert.equal(v4.connections, 0)
      })

      it('421 4.7.0 greeting over IPv6: stock defers for its retry interval', async function () {
        const d = destination()
        v6.refuse = { stage: 'greeting', code: 421, text: GMAIL_GREETING_PTR }
        const r = await deliver(h, d.rcpt, label)
        note('421 4.7.0 greeting')
        assert.equal(r.outcome.kind, 'deferred', r.outcome.line)
        assert.ok(r.outcome.delay > 0, r.outcome.line)
        assert.equal(v4.connections, 0)
      })
    })
  }
})
