'use strict'

// What the plugin learns across destinations, in real Haraka 3.3.4 and 3.0.3: this host
// without IPv6 (a namespace of the test's own) asks no AAAA and tries no IPv6; IPv6 black-holed
// at several MX hosts makes the next new destination start with IPv4 (and the egress gauge
// say so); fast connects make a
// black-holed AAAA cost the learnt delay, not the fixed 250 ms. What happened is read from the
// delivery record (attempt start times and delays are data, not wall-clock measurements).

const assert = require('node:assert/strict')

const {
  startSink,
  startBlackHole,
  startHaraka,
  sendMail,
  waitForOutcome,
  queuedUuid,
  freePort,
  dnsSuite,
  runWithoutIpv6,
  loopbackOutbound,
  LOOPBACK_FILTER,
} = require('../../support')

for (const version of ['3.3.4', '3.0.3']) {
  describe(`Haraka ${version} with happy-eyeballs: learning across destinations`, function () {
    this.timeout(90000)

    const suite = dnsSuite()

    async function haraka(ini) {
      const h = await startHaraka({
        version,
        dnsPort: suite.dns.port,
        plugins: ['happy-eyeballs'],
        outbound: loopbackOutbound(version),
        files: { 'happy_eyeballs.ini': `${LOOPBACK_FILTER}${ini}` },
      })
      suite.cleanup(() => h.stop())
      return h
    }

    async function send(h, to) {
      const from = h.logLength()
      const info = await sendMail({ port: h.port, to })
      return waitForOutcome(h, 45000, { from, uuid: queuedUuid(info) })
    }

    /** One MX host per domain, AAAA ::1 and A 127.0.0.1. */
    function dualStack(domain) {
      suite.dns.setZone(domain, { mx: [{ preference: 10, exchange: `mx.${domain}` }] })
      suite.dns.setZone(`mx.${domain}`, { aaaa: ['::1'], a: ['127.0.0.1'] })
    }

    const shown = (attempts) =>
      attempts.map((a) => `${a.target.address} ${a.outcome} +${a.startMs}`).join(', ')

    it('IPv6 black-holed at 3 MX hosts while IPv4 worked: the 4th new destination starts with IPv4, IPv6 second', async function () {
      const hole = await startBlackHole({ host: '::1' })
      suite.cleanup(() => hole.close())
      const sink = await startSink({ host: '127.0.0.1', port: hole.port })
      suite.cleanup(() => sink.close())
      // ::1 is every host's AAAA here: with the health cache on, the address itself would go
      // behind IPv4 after the first black hole. Off, only the egress judgement can reorder.
      const metricsPort = await freePort()
      const h = await haraka(
        `[main]\nport=${hole.port}\n[cache]\nttl_s=0\n[egress]\nipv6_impaired_after=3\n` +
          `[metrics]\nlisten=127.0.0.1:${metricsPort}\n`,
      )
      for (const d of ['e1.test', 'e2.test', 'e3.test', 'e4.test']) dualStack(d)
      const egressGauge = async () => {
        const text = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text()
        return /^happy_eyeballs_ipv6_egress_impaired (\d+)$/m.exec(text)?.[1]
      }
      await h.waitForLog(new RegExp(`serving metrics at http://127\\.0\\.0\\.1:${metricsPort}/metrics`))
      assert.equal(await egressGauge(), '0')

      for (const d of ['e1.test', 'e2.test', 'e3.test']) {
        const o = await send(h, `rcpt@${d}`)
        assert.equal(o.kind, 'delivered', o.line)
        const [v6, v4] = o.record.race.attempts
        assert.equal(v6.target.address, '::1', shown(o.record.race.attempts))
        assert.equal(v6.outcome, 'cancelled')
        assert.equal(v4.outcome, 'connected')
        assert.equal(o.record.plan.ipv4FirstForEgress, undefined, `${d}: too early to call IPv6 impaired`)
      }
      await h.waitForLog(/happy-eyeballs: IPv6 egress impaired: unanswered at .*while IPv4 worked/)
      assert.equal(await egressGauge(), '1', 'the gauge shows the state the log line reported')

      const fourth = await send(h, 'rcpt@e4.test')
      assert.equal(fourth.kind, 'delivered', fourth.line)
      assert.equal(fourth.ip, '127.0.0.1')
      const { plan, race } = fourth.record
      assert.deepEqual(plan.ipv4FirstForEgress, ['mx.e4.test'])
      assert.deepEqual(
        plan.kept.map((c) => c.address),
        ['127.0.0.1', '::1'],
        'IPv4 first, IPv6 still raced second',
      )
      assert.equal(race.attempts[0].target.address, '127.0.0.1', shown(race.attempts))
      assert.equal(race.attempts[0].outcome, 'connected')
      assert.match(fourth.line + h.log(), /IPv4 first for mx\.e4\.test: IPv6 egress impaired/)
      assert.equal(sink.connections, 4, 'every message on its raced socket')
    })

    it('impaired IPv6 egress heals: the background recheck of an IPv6 address IPv4 won over sees it, and new destinations lead with IPv6 again', async function () {
      const hole = await startBlackHole({ host: '::1' })
      const port = hole.port
      let holeOpen = true
      suite.cleanup(() => holeOpen && hole.close())
      const v4sink = await startSink({ host: '127.0.0.1', port })
      suite.cleanup(() => v4sink.close())
      const h = await haraka(
        `[main]\nport=${port}\n[cache]\nttl_s=0\n[race]\ndeadline_ms=1000\n` +
          '[egress]\nipv6_impaired_after=3\nrecheck_s=1\n',
      )
      for (const d of ['e1.test', 'e2.test', 'e3.test', 'e4.test', 'e5.test', 'e6.test']) dualStack(d)
      for (const d of ['e1.test', 'e2.test', 'e3.test'])
        assert.equal((await send(h, `rcpt@${d}`)).kind, 'delivered')
      await h.waitForLog(/happy-eyeballs: IPv6 egress impaired/)

      // IPv4 leads and wins before IPv6 starts; the recheck meets the black hole.
      const fourth = await send(h, 'rcpt@e4.test')
      assert.deepEqual(fourth.record.plan.ipv4FirstForEgress, ['mx.e4.test'])
      const [first] = fourth.record.race.attempts
      assert.equal(
        `${first.target.address} ${first.outcome}`,
        '127.0.0.1 connected',
        shown(fourth.record.race.attempts),
      )
      await h.waitForLog(
        /IPv6 egress recheck at mx\.e4\.test \[::1\]:\d+: .*timed out.*; still impaired/,
        5000,
      )

      await hole.close()
      holeOpen = false
      const v6sink = await startSink({ host: '::1', port })
      suite.cleanup(() => v6sink.close())
      const from = h.logLength()
      const fifth = await send(h, 'rcpt@e5.test')
      assert.equal(fifth.ip, '127.0.0.1', 'still impaired: IPv4 first, and it won')
      await h.waitForLog(/happy-eyeballs: IPv6 egress works again/, 5000, { from })
      assert.equal(v6sink.connections, 1, 'the recheck connected to the healed IPv6 path')

      const sixth = await send(h, 'rcpt@e6.test')
      assert.equal(sixth.kind, 'delivered', sixth.line)
      assert.equal(sixth.record.plan.ipv4FirstForEgress, undefined)
      assert.equal(sixth.ip, '::1', shown(sixth.record.race.attempts))
      assert.deepEqual(
        v6sink.messages.map((m) => m.to[0]),
        ['rcpt@e6.test'],
        'the recheck sent no mail, only its QUIT',
      )
    })

    it('after fast IPv6 and IPv4 connects, a new black-holed AAAA costs the learnt delay (100 ms), not 250 ms', async function () {
      const port = await freePort()
      const v6sink = await startSink({ host: '::1', port })
      const v4sink = await startSink({ host: '127.0.0.1', port })
      suite.cleanup(() => v4sink.close())
      const h = await haraka(`[main]\nport=${port}\n[race]\nattempt_delay_ms=250\nmin_attempt_delay_ms=100\n`)
      dualStack('fast.test')
      const fast = await send(h, 'rcpt@fast.test')
      assert.equal(fast.kind, 'delivered', fast.line)
      assert.equal(fast.record.race.attempts[0].target.address, '::1')
      assert.equal(fast.record.race.attempts[0].delayMs, 250, 'nothing known yet: the maximum')
      assert.ok(fast.record.race.attempts[0].connectMs !== undefined)

      // The IPv6 path now drops SYNs: a black hole on the same address and port.
      await v6sink.close()
      const hole = await startBlackHole({ host: '::1', port })
      suite.cleanup(() => hole.close())
      dualStack('hole.test')
      const o = await send(h, 'rcpt@hole.test')
      assert.equal(o.kind, 'delivered', o.line)
      assert.equal(o.ip, '127.0.0.1')
      const [v6, v4] = o.record.race.attempts
      assert.equal(v6.target.address, '::1', shown(o.record.race.attempts))
      assert.equal(v6.outcome, 'cancelled')
      // Loopback connects take a millisecond or two: 2 × SRTT + 4 × RTTVAR is under the minimum.
      assert.equal(v6.delayMs, 100, "this host's IPv6 connect times give the minimum")
      const after = v4.startMs - v6.startMs
      assert.ok(after >= 90 && after < 250, `IPv4 started ${after} ms after IPv6 (learnt ${v6.delayMs} ms)`)
    })

    it('a host without IPv6 (its own namespace, no ::1) asks no AAAA and tries no IPv6 of a dual-stack MX', async function () {
      const r = await runWithoutIpv6({ version })
      assert.equal(r.outcome.kind, 'delivered', r.outcome.line)
      assert.equal(r.outcome.ip, '127.0.0.1')
      assert.deepEqual(
        Object.values(r.interfaces)
          .flat()
          .filter((i) => i.family === 'IPv6'),
        [],
        'the namespace has no IPv6 address',
      )
      assert.ok(r.queries.includes('A mx.dual.test'), r.queries.join(', '))
      assert.deepEqual(
        r.queries.filter((q) => q.startsWith('AAAA')),
        [],
        'no AAAA query',
      )
      const { resolution, plan, race } = r.outcome.record
      assert.deepEqual(resolution.families, ['ipv4'])
      assert.deepEqual(plan.notQueried, [
        { family: 'ipv6', reason: 'no IPv6 connectivity: no global IPv6 address' },
      ])
      assert.deepEqual(
        race.attempts.map((a) => a.target.address),
        ['127.0.0.1'],
      )
      assert.equal(r.sinkConnections, 1)
      assert.equal(r.log.length, 1, 'host connectivity logged once')
      assert.match(r.log[0], /host connectivity: IPv4 loopback; IPv6 no address/)
    })
  })
}
