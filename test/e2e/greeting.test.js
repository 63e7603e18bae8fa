'use strict'

// Racing to the SMTP greeting inside real Haraka processes (3.3.4 and 3.0.3): a refusing, a
// silent, a slow and a postscreen-style greeting, on sinks at [::1] and 127.0.0.1 on one port.
// The sinks behind a greeting front record every byte a client sent before their final
// greeting line: there must be none, for the winner and for the losers.

const assert = require('node:assert/strict')

const {
  startSink,
  startHaraka,
  sendMail,
  waitForOutcome,
  queuedUuid,
  dnsSuite,
  loopbackOutbound,
  LOOPBACK_FILTER,
} = require('../../support')

const REFUSAL = '421 4.7.0 mx.greet.test IPv6 not accepted'

for (const version of ['3.3.4', '3.0.3']) {
  describe(`Haraka ${version} with happy-eyeballs racing to the greeting`, function () {
    this.timeout(60000)

    const suite = dnsSuite()

    async function haraka({ plugin = true, ini = '', outbound = {} } = {}) {
      const h = await startHaraka({
        version,
        dnsPort: suite.dns.port,
        plugins: plugin ? ['happy-eyeballs'] : [],
        outbound: { ...loopbackOutbound(version), ...outbound },
        files: plugin ? { 'happy_eyeballs.ini': `${LOOPBACK_FILTER}${ini}` } : {},
      })
      suite.cleanup(() => h.stop())
      return h
    }

    async function send(h, to) {
      const from = h.logLength()
      const started = Date.now()
      const info = await sendMail({ port: h.port, to })
      const outcome = await waitForOutcome(h, 45000, { from, uuid: queuedUuid(info) })
      return { outcome, ms: Date.now() - started, log: () => h.log().slice(from) }
    }

    async function sink(opts) {
      const s = await startSink(opts)
      suite.cleanup(() => s.close())
      return s
    }

    /** An IPv6 sink with `v6` options and an IPv4 sink with `v4` options on the same port. */
    async function dualStack(domain, v6, v4 = {}, port = 0) {
      const six = await sink({ host: '::1', port, ...v6 })
      const four = await sink({ host: '127.0.0.1', port: six.port, ...v4 })
      suite.dns.setZone(domain, { mx: [{ preference: 10, exchange: `mx.${domain}` }] })
      suite.dns.setZone(`mx.${domain}`, { aaaa: ['::1'], a: ['127.0.0.1'] })
      return { six, four, port: six.port }
    }

    /** The race's attempts from the plugin's log line: [address, start ms, outcome text, ms]. */
    function raceOf(log) {
      const race = /race (.*?); (winner|no winner|defer)/.exec(log)
      assert.ok(race, log)
      return race[1].split('; ').map((a) => {
        const m = /^\+(\d+)ms (\S+) (.*?)(?: after (\d+) ms)?(, no greeting by the deadline)?$/.exec(a)
        assert.ok(m, a)
        return { address: m[2].replace(/:\d+$/, ''), start: Number(m[1]), what: m[3], ms: Number(m[4]) }
      })
    }

    it('a 421 greeting over IPv6 fails that attempt and IPv4 starts at once: delivered over IPv4', async function () {
      const { six, four, port } = await dualStack('refuse.test', { greeting: REFUSAL })
      const h = await haraka({ ini: `[main]\nport=${port}\n` })

      const { outcome, log } = await send(h, 'rcpt@refuse.test')
      assert.equal(outcome.kind, 'delivered', outcome.line)
      assert.equal(outcome.ip, '127.0.0.1')
      const [v6, v4] = raceOf(log())
      assert.deepEqual([v6.address, v6.what], ['[::1]', `failed (greeting ${REFUSAL})`])
      assert.equal(v4.what, 'connected')
      // The next address starts on the refusal, not after the attempt delay.
      assert.ok(Math.abs(v4.start - (v6.start + v6.ms)) <= 1, JSON.stringify([v6, v4]))
      assert.equal(six.connections, 1, 'Haraka went back to the refusing address')
      assert.equal(four.connections, 1, 'the raced socket must be the one delivered on')
      await four.waitForMessages(1, 5000)
    })

    it('a 5xx greeting on every address is left to Haraka, which bounces as without the plugin, never a retry', async function () {
      const s = await sink({ host: '127.0.0.1', greeting: '554 5.7.1 no mail from you' })
      suite.dns.setZone('permanent.test', { mx: [{ preference: 10, exchange: 'mx.permanent.test' }] })
      suite.dns.setZone('mx.permanent.test', { a: ['127.0.0.1'] })
      const h = await haraka({ ini: `[main]\nport=${s.port}\n` })

      const { outcome, log } = await send(h, 'rcpt@permanent.test')
      assert.equal(outcome.kind, 'bounced', outcome.line)
      assert.match(outcome.err, /554/)
      assert.match(
        log(),
        /failed \(greeting 554 5\.7\.1 no mail from you\) after \d+ ms; no winner: Haraka connects itself/,
      )
      assert.equal(s.connections, 2, 'the race, then Haraka itself')
    })

    it('success=connect keeps the old behaviour: the refusing IPv6 wins at TCP and Haraka defers on its 421', async function () {
      const { four, port } = await dualStack('refuse.test', { greeting: REFUSAL })
      const h = await haraka({ ini: `[main]\nport=${port}\n[race]\nsuccess=connect\n` })

      const { outcome, log } = await send(h, 'rcpt@refuse.test')
      assert.equal(outcome.kind, 'deferred', outcome.line)
      assert.match(outcome.err, /421/)
      assert.match(log(), /race \+\d+ms \[::1\]:\d+ connected after \d+ ms; winner ::1/)
      assert.equal(four.connections, 0)
    })

    it('a silent IPv6 server (TCP, no greeting) lets IPv4 start after the attempt delay: delivered, the loser sent nothing', async function () {
      const { six, four, port } = await dualStack('silent.test', { silent: true })
      const h = await haraka({ ini: `[main]\nport=${port}\n` })

      const { outcome, log } = await send(h, 'rcpt@silent.test')
      assert.equal(outcome.kind, 'delivered', outcome.line)
      assert.equal(outcome.ip, '127.0.0.1')
      const [v6, v4] = raceOf(log())
      assert.equal(v6.what, 'cancelled')
      assert.ok(v4.start - v6.start >= 200, `IPv4 started ${v4.start - v6.start} ms after IPv6`)
      assert.equal(six.connections, 1)
      assert.deepEqual(
        six.sessions.map((s) => s.early),
        [''],
        'a byte was sent to a server that had not greeted',
      )
      await four.waitForMessages(1, 5000)
    })

    it('an IPv6 server that greets after IPv4 won is closed before its greeting, with no byte sent to it', async function () {
      const { six, four, port } = await dualStack('late.test', { greetingDelayMs: 1500 })
      const h = await haraka({ ini: `[main]\nport=${port}\n` })

      const { outcome } = await send(h, 'rcpt@late.test')
      assert.equal(outcome.kind, 'delivered', outcome.line)
      assert.equal(outcome.ip, '127.0.0.1')
      await four.waitForMessages(1, 5000)
      assert.equal(six.sessions.length, 1)
      const [loser] = six.sessions
      assert.equal(loser.greeted, false, 'the loser was kept open until it greeted')
      assert.equal(loser.early + loser.after, '', 'a byte (a QUIT?) was sent to a loser that had not greeted')
    })

    it('a slow greeting (2 s) on the only address is waited for and delivered, as without the plugin', async function () {
      const s = await sink({ host: '127.0.0.1', greetingDelayMs: 2000 })
      suite.dns.setZone('slow.test', { mx: [{ preference: 10, exchange: 'mx.slow.test' }] })
      suite.dns.setZone('mx.slow.test', { a: ['127.0.0.1'] })
      const h = await haraka({ ini: `[main]\nport=${s.port}\n` })

      const { outcome, log } = await send(h, 'rcpt@slow.test')
      assert.equal(outcome.kind, 'delivered', outcome.line)
      const [only] = raceOf(log())
      assert.equal(only.what, 'connected')
      assert.ok(only.ms >= 2000, `won after ${only.ms} ms, before the greeting`)
      assert.deepEqual(
        s.sessions.map((x) => x.early),
        [''],
      )
      assert.match(s.sessions[0].after, /^EHLO /)
      await s.waitForMessages(1, 5000)
    })

    it('a greeting slower than the race deadline: the connected address is handed over and Haraka waits for it', async function () {
      const s = await sink({ host: '127.0.0.1', greetingDelayMs: 1500 })
      suite.dns.setZone('slower.test', { mx: [{ preference: 10, exchange: 'mx.slower.test' }] })
      suite.dns.setZone('mx.slower.test', { a: ['127.0.0.1'] })
      const h = await haraka({ ini: `[main]\nport=${s.port}\n[race]\ndeadline_ms=500\n` })

      const { outcome, log } = await send(h, 'rcpt@slower.test')
      assert.equal(outcome.kind, 'delivered', outcome.line)
      assert.match(
        log(),
        /127\.0\.0\.1:\d+ connected after \d+ ms, no greeting by the deadline; winner 127\.0\.0\.1/,
      )
      assert.equal(s.connections, 1, 'Haraka connected again instead of taking the raced socket')
      assert.deepEqual(
        s.sessions.map((x) => x.early),
        [''],
      )
      await s.waitForMessages(1, 5000)
    })

    it('a postscreen-style greeting (220- at once, 220 3 s later) wins at its first line; Haraka waits for the last', async function () {
      const { six, four, port } = await dualStack('postscreen.test', {
        preGreeting: ['220-mx.postscreen.test ESMTP wait'],
        greetingDelayMs: 3000,
      })
      const h = await haraka({ ini: `[main]\nport=${port}\n` })

      const { outcome, log } = await send(h, 'rcpt@postscreen.test')
      assert.equal(outcome.kind, 'delivered', outcome.line)
      assert.equal(outcome.ip, '::1')
      const [v6] = raceOf(log())
      assert.equal(v6.what, 'connected')
      // Won before the final line can have come: it is sent 3 s after the connect.
      assert.ok(v6.ms < 3000, `won after ${v6.ms} ms`)
      assert.equal(six.sessions.length, 1)
      const [session] = six.sessions
      assert.equal(session.early, '', 'bytes sent before the final greeting line (PREGREET)')
      assert.match(session.after, /^EHLO /, 'Haraka did not go on after the final line')
      for (const s of four.sessions) assert.equal(s.early, '')
      await six.waitForMessages(1, 5000)
    })

    it('STARTTLS after a race won on a multi-line greeting: delivered over TLS on the raced socket', async function () {
      const { four, port } = await dualStack(
        'tls.test',
        { greeting: REFUSAL },
        { starttls: true, preGreeting: ['220-mx.tls.test first line'], greetingDelayMs: 300 },
      )
      const h = await haraka({ ini: `[main]\nport=${port}\n`, outbound: { enable_tls: true } })

      const { outcome, log } = await send(h, 'rcpt@tls.test')
      assert.equal(outcome.kind, 'delivered', outcome.line)
      assert.match(log(), /winner 127\.0\.0\.1/)
      const [msg] = await four.waitForMessages(1, 5000)
      assert.equal(msg.secure, true, 'the message did not travel over TLS')
      assert.equal(four.connections, 1)
      assert.equal(four.sessions[0].early, '')
    })
  })

  // The same servers without the plugin, on port 25 (Haraka's own MX port; the tests run in
  // a network namespace of their own), for comparison.
  describe(`Haraka ${version} without the plugin, same greetings`, function () {
    this.timeout(60000)

    const suite = dnsSuite()

    async function stock(outbound = {}) {
      const h = await startHaraka({
        version,
        dnsPort: suite.dns.port,
        outbound: { ...loopbackOutbound(version), local_mx_ok: true, ipv6_enabled: true, ...outbound },
      })
      suite.cleanup(() => h.stop())
      return h
    }
    async function sink(opts) {
      const s = await startSink({ port: 25, ...opts })
      suite.cleanup(() => s.close())
      return s
    }
    async function send(h, to) {
      const from = h.logLength()
      const started = Date.now()
      const info = await sendMail({ port: h.port, to })
      const outcome = await waitForOutcome(h, 45000, { from, uuid: queuedUuid(info) })
      return { outcome, ms: Date.now() - started }
    }
    function zone(domain, { v6 = true } = {}) {
      suite.dns.setZone(domain, { mx: [{ preference: 10, exchange: `mx.${domain}` }] })
      suite.dns.setZone(`mx.${domain}`, { ...(v6 ? { aaaa: ['::1'] } : {}), a: ['127.0.0.1'] })
    }

    it('a 421 greeting over IPv6 defers the message; IPv4 is never tried', async function () {
      await sink({ host: '::1', greeting: REFUSAL })
      const four = await sink({ host: '127.0.0.1' })
      zone('refuse.test')
      const h = await stock()
      const { outcome } = await send(h, 'rcpt@refuse.test')
      assert.equal(outcome.kind, 'deferred', outcome.line)
      assert.match(outcome.err, /421/)
      assert.equal(four.connections, 0)
    })

    it('a silent IPv6 server costs connect_timeout, then IPv4 delivers', async function () {
      const six = await sink({ host: '::1', silent: true })
      const four = await sink({ host: '127.0.0.1' })
      zone('silent.test')
      const h = await stock({ connect_timeout: 5 })
      const { outcome, ms } = await send(h, 'rcpt@silent.test')
      assert.equal(outcome.kind, 'delivered', outcome.line)
      assert.equal(outcome.ip, '127.0.0.1')
      assert.ok(ms >= 5000, `${ms} ms`)
      assert.equal(six.sessions[0].early, '')
      await four.waitForMessages(1, 5000)
    })

    it('a slow greeting (2 s) on the only address is waited for and delivered', async function () {
      const s = await sink({ host: '127.0.0.1', greetingDelayMs: 2000 })
      zone('slow.test', { v6: false })
      const h = await stock()
      const { outcome } = await send(h, 'rcpt@slow.test')
      assert.equal(outcome.kind, 'delivered', outcome.line)
      assert.equal(s.sessions[0].early, '')
      await s.waitForMessages(1, 5000)
    })

    it('a postscreen-style greeting is waited for to its last line and delivered', async function () {
      const six = await sink({
        host: '::1',
        preGreeting: ['220-mx.postscreen.test ESMTP wait'],
        greetingDelayMs: 3000,
      })
      await sink({ host: '127.0.0.1' })
      zone('postscreen.test')
      const h = await stock()
      const { outcome } = await send(h, 'rcpt@postscreen.test')
      assert.equal(outcome.kind, 'delivered', outcome.line)
      assert.equal(outcome.ip, '::1')
      assert.equal(six.sessions[0].early, '')
      await six.waitForMessages(1, 5000)
    })
  })
}
