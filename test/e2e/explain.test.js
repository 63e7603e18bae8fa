'use strict'

// What other plugins read: a plugin listed BEFORE happy-eyeballs in config/plugins sees the
// plugin's explained deferral and bounce in its own deferred/bounce hooks, and Haraka's own
// "Temp failing" line carries it too.

const assert = require('node:assert/strict')

const fixtures = require('haraka-test-fixtures')

const { startHaraka, sendMail, waitForOutcome, queuedUuid } = require('../../support')

// Logs what its deferred and bounce hooks were given, then steps aside.
const OBSERVER = `'use strict'
exports.register = function () {
  this.register_hook('deferred', 'saw_deferral')
  this.register_hook('bounce', 'saw_bounce')
}
const dsnOf = (hmail) => hmail.todo.rcpt_to.map((r) => r.dsn_status + ' ' + r.dsn_msg).join(' | ')
exports.saw_deferral = function (next, hmail, params) {
  this.loginfo('observer deferred err=[' + params.err + '] dsn=[' + dsnOf(hmail) + ']')
  next()
}
exports.saw_bounce = function (next, hmail, err) {
  this.loginfo('observer bounce err=[' + err + '] dsn=[' + dsnOf(hmail) + ']')
  next()
}
`

for (const version of ['3.3.4', '3.0.3']) {
  describe(`Haraka ${version}: plugins listed before happy-eyeballs read its explanation`, function () {
    this.timeout(60000)

    let dns = null
    const cleanup = []

    before(async function () {
      dns = await fixtures.dns.start({})
      // The only MX address is link-local: every address is filtered.
      dns.setZone('filtered.test', { mx: [{ preference: 10, exchange: 'mx.filtered.test' }] })
      dns.setZone('mx.filtered.test', { aaaa: ['fe80::1'] })
    })
    after(async function () {
      await dns.close()
    })
    afterEach(async function () {
      for (const stop of cleanup.splice(0).reverse()) await stop()
    })

    async function send(ini) {
      const h = await startHaraka({
        version,
        dnsPort: dns.port,
        plugins: ['observer', 'happy-eyeballs'],
        pluginFiles: { observer: OBSERVER },
        files: { 'happy_eyeballs.ini': ini },
      })
      cleanup.push(() => h.stop())
      const from = h.logLength()
      const info = await sendMail({ port: h.port, to: 'rcpt@filtered.test' })
      const outcome = await waitForOutcome(h, 30000, { from, uuid: queuedUuid(info) })
      // Haraka logs the outcome before it runs the deferred/bounce hooks' successors.
      await h.waitForLog(/observer (deferred|bounce) err=/, 10000, { from })
      return { outcome, log: h.log().slice(from) }
    }

    it('a deferral: the earlier plugin and Haraka\'s "Temp failing" line read the 4.4.4 reason', async function () {
      const { outcome, log } = await send('')
      assert.equal(outcome.kind, 'deferred', outcome.line)
      const reason = 'no usable address for filtered.test: fe80::1 of mx.filtered.test: link-local'
      assert.equal(outcome.err, reason)
      const seen = /observer deferred err=\[([^\]]*)\] dsn=\[([^\]]*)\]/.exec(log)
      assert.ok(seen, 'the observer plugin logged nothing')
      assert.equal(seen[1], reason)
      assert.equal(seen[2], `4.4.4 ${reason}`)
      assert.doesNotMatch(log, /Temporary MX lookup error/)
    })

    it('a bounce: the earlier plugin reads the 5.4.4 reason on every recipient', async function () {
      const { outcome, log } = await send('[filter]\nall_filtered=bounce\n')
      assert.equal(outcome.kind, 'bounced', outcome.line)
      const seen = /observer bounce err=\[([^\]]*)\] dsn=\[([^\]]*)\]/.exec(log)
      assert.ok(seen, 'the observer plugin logged nothing')
      assert.equal(
        seen[2],
        '5.4.4 no usable address for filtered.test: fe80::1 of mx.filtered.test: link-local',
      )
    })
  })
}
