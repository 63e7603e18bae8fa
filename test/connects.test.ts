import assert from 'node:assert/strict'

import {
  type ConnectAttempt,
  MessageConnects,
  describeConnectError,
  explainExhausted,
  messageBind,
} from '../lib/connects'
import type { RaceTarget } from '../lib/race'

const target = (address: string, port = 25): RaceTarget => ({
  address,
  family: address.includes(':') ? 'ipv6' : 'ipv4',
  exchange: 'mx.d.test',
  preference: 10,
  port,
})

/** An attempt as a test states it: `ms` and `at` default to a 5 ms attempt at time 0. */
type AttemptStep = Omit<ConnectAttempt, 'ms' | 'at'> & Partial<Pick<ConnectAttempt, 'ms' | 'at'>>

function record(targets: RaceTarget[], attempts: AttemptStep[], observed = true): MessageConnects {
  const r = new MessageConnects('d.test')
  r.targets = targets
  r.observed = observed
  for (const a of attempts) r.add({ ms: 5, at: 0, ...a })
  return r
}

describe('per-message delivery record', function () {
  describe('explainExhausted', function () {
    it("names each address by Haraka's own last connect to it, 4.4.1 when none connected", function () {
      const r = record(
        [target('::1'), target('127.0.0.1')],
        [
          { address: '::1', port: 25, by: 'race', outcome: 'abandoned' },
          { address: '::1', port: 25, by: 'haraka', outcome: 'failed', error: 'connection timed out' },
          { address: '127.0.0.1', port: 25, by: 'haraka', outcome: 'failed', error: 'connect ECONNREFUSED' },
        ],
      )
      const { status, reason } = explainExhausted(r)
      assert.equal(
        reason,
        'every MX address of d.test failed: ::1: connection timed out; 127.0.0.1: connect ECONNREFUSED',
      )
      assert.deepEqual(status, { code: 450, subject: 4, detail: 1 })
    })

    it('a race loser Haraka never tried reads as slow, never as an error', function () {
      const r = record(
        [target('::1'), target('127.0.0.1')],
        [
          { address: '::1', port: 25, by: 'race', outcome: 'abandoned', ms: 253 },
          { address: '127.0.0.1', port: 25, by: 'haraka', outcome: 'failed', error: 'connect ECONNREFUSED' },
        ],
      )
      const { reason } = explainExhausted(r)
      assert.match(reason, /::1: not tried by Haraka; another address won the race after 253 ms;/)
      assert.doesNotMatch(reason, /::1: no answer/)
    })

    it('a connect that succeeded means the session failed after it: 4.4.2, raced socket said so', function () {
      const r = record(
        [target('127.0.0.1'), target('127.0.0.2')],
        [
          { address: '127.0.0.1', port: 25, by: 'race', outcome: 'connected' },
          { address: '127.0.0.1', port: 25, by: 'haraka', outcome: 'connected', handedOver: true },
          { address: '127.0.0.2', port: 25, by: 'haraka', outcome: 'connected' },
        ],
      )
      const { status, reason } = explainExhausted(r)
      assert.equal(
        reason,
        'every MX address of d.test failed: 127.0.0.1: connected (raced socket), then the SMTP session failed; ' +
          '127.0.0.2: connected, then the SMTP session failed',
      )
      assert.deepEqual(status, { code: 450, subject: 4, detail: 2 })
    })

    it('an address only the race tried is named with the race outcome', function () {
      const r = record(
        [target('::1'), target('127.0.0.1')],
        [
          { address: '::1', port: 25, by: 'race', outcome: 'failed', error: 'connect ECONNREFUSED' },
          { address: '127.0.0.1', port: 25, by: 'race', outcome: 'connected' },
        ],
      )
      assert.equal(
        explainExhausted(r).reason,
        'every MX address of d.test failed: ::1: connect ECONNREFUSED (race); ' +
          '127.0.0.1: connected in the race; Haraka did not use it',
      )
    })

    it('"not tried" only when Haraka\'s connects are watched; otherwise the outcome was not seen', function () {
      const targets = [target('127.0.0.1')]
      assert.match(explainExhausted(record(targets, [], true)).reason, /127\.0\.0\.1: not tried$/)
      assert.match(explainExhausted(record(targets, [], false)).reason, /127\.0\.0\.1: outcome not seen$/)
    })

    it('an attempt on another port of the same address is not this target', function () {
      const r = record(
        [target('127.0.0.1', 25)],
        [
          {
            address: '127.0.0.1',
            port: 2525,
            by: 'haraka',
            outcome: 'failed',
            error: 'connect ECONNREFUSED',
          },
        ],
      )
      assert.match(explainExhausted(r).reason, /127\.0\.0\.1: not tried$/)
    })
  })

  describe('describeConnectError', function () {
    it("reads Haraka 3.0.x's and 3.1+'s connect error strings and socket errors alike", function () {
      assert.equal(
        describeConnectError('Outbound connection error: Error: connect ECONNREFUSED 127.0.0.1:25'),
        'connect ECONNREFUSED',
      )
      assert.equal(describeConnectError('connect ECONNREFUSED ::1:25'), 'connect ECONNREFUSED')
      assert.equal(describeConnectError('bind EINVAL 127.0.0.2'), 'bind EINVAL')
      assert.equal(
        describeConnectError('connection timed out to outbound::{"port":25,"host":"::1"}'),
        'connection timed out',
      )
      assert.equal(describeConnectError('Outbound connection timed out to ::1:25'), 'connection timed out')
      assert.equal(
        describeConnectError(Object.assign(new Error('x'), { code: 'EHOSTUNREACH', syscall: 'connect' })),
        'connect EHOSTUNREACH',
      )
      assert.equal(describeConnectError('x'.repeat(300)).length, 201)
    })
  })

  describe('messageBind', function () {
    it("fills each family without a [bind] address from notes.outbound_ip, as Haraka's mx.bind does", function () {
      assert.deepEqual(messageBind({}, '127.0.0.2'), { ipv4: '127.0.0.2', ipv6: '127.0.0.2' })
      assert.deepEqual(messageBind({ ipv6: '::1' }, '127.0.0.2'), { ipv4: '127.0.0.2', ipv6: '::1' })
    })
    it('no note, or a note that is not a string, leaves [bind] as it is', function () {
      const bind = { ipv4: '127.0.0.3' }
      assert.equal(messageBind(bind, undefined), bind)
      assert.equal(messageBind(bind, ''), bind)
      assert.equal(messageBind(bind, { ip: '127.0.0.2' }), bind)
    })
  })
})
