'use strict'

// A small soak run: 100 messages over 10 domains, each with a seeded mix of DNS and connection
// faults, through real Haraka 3.3.4 with the plugin. Every message must end in exactly one
// outcome that the sinks, the DSNs and the queue dir confirm, and Haraka must come out of it
// alive, with its sockets closed and the health cache inside its bound.

const assert = require('node:assert/strict')

const { runSoak } = require('../../bench/soak/run')
const { FAULTS } = require('../../bench/soak/layout')

const MESSAGES = 100
// The smallest bound the plugin accepts, so that ten domains' addresses overflow it.
const CACHE_BOUND = 10

describe('soak: 100 messages over 10 faulted domains through Haraka 3.3.4 with happy-eyeballs', function () {
  // Bounded by the runner's own limits (outcomes 120 s after the last injection, DSNs 30 s,
  // queue 10 s, fds 15 s) plus start-up; a healthy run takes about 25 s.
  this.timeout(240000)

  let report = null
  let run = null

  before(async function () {
    report = await runSoak({
      messages: MESSAGES,
      domains: 10,
      seed: 7,
      compareStock: false,
      cacheMaxEntries: CACHE_BOUND,
      pluginFrom: 'package',
    })
    run = report.variants.plugin
  })

  it('lays out every fault kind on some domain', function () {
    for (const fault of FAULTS) {
      assert.ok(
        report.layout.some((d) => d.tags.includes(fault)),
        `no domain has ${fault}`,
      )
    }
  })

  it('gives every injected message exactly one outcome: delivered, deferred or bounced', function () {
    assert.deepEqual(run.injectErrors, [])
    assert.equal(run.injected, MESSAGES)
    assert.equal(run.counts.missing, 0, 'messages without an outcome')
    assert.equal(run.counts.repeated, 0, 'messages with more than one outcome')
    assert.equal(run.injected, run.counts.delivered + run.counts.deferred + run.counts.bounced)
    // The layout has healthy, 421/SERVFAIL and NXDOMAIN domains: all three outcomes occur.
    assert.ok(run.counts.delivered > 0 && run.counts.deferred > 0 && run.counts.bounced > 0, run.counts)
  })

  it('the sinks received exactly the delivered messages, once each, at the address Haraka delivered to', function () {
    assert.equal(run.sinks.received, run.counts.delivered)
    assert.equal(run.sinks.duplicates, 0, 'delivered twice')
    assert.equal(run.sinks.lost, 0, 'logged as delivered but not at a sink')
    assert.equal(run.sinks.notLogged, 0, 'at a sink but not logged as delivered')
    assert.equal(run.sinks.wrongIp, 0, 'at a sink other than the logged ip')
  })

  it("sent one DSN to the sender's domain for each bounce", function () {
    assert.equal(run.dsn.received, run.counts.bounced)
    assert.equal(run.dsn.matched, run.counts.bounced)
  })

  it('leaves exactly the deferred messages in the queue dir', function () {
    assert.equal(run.queue.files, run.counts.deferred)
    assert.equal(run.queue.extra, 0)
    assert.equal(run.queue.missing, 0)
    assert.equal(run.queue.errorFiles, 0)
  })

  it('names a reason for every deferral, never the bare "Tried all MXs"', function () {
    const deferred = run.records.filter((r) => r.kind === 'deferred')
    assert.ok(deferred.length > 0)
    for (const r of deferred) assert.doesNotMatch(r.err, /^Tried all MXs$/, `${r.domain} ${r.tags}`)
  })

  it('never connects to a filtered fe80:: address', function () {
    assert.ok(report.layout.some((d) => d.tags.includes('v6-linklocal')))
    assert.equal(run.haraka.failedSockets.EINVAL, 0)
  })

  it('keeps Haraka alive without an uncaught exception or a plugin internal error', function () {
    assert.equal(run.haraka.alive, true, JSON.stringify(run.haraka.exitInfo))
    assert.deepEqual(run.haraka.crashLines, [])
    assert.equal(run.haraka.internalErrors, 0)
  })

  it("returns Haraka's open TCP sockets to the baseline and its fds to within the tolerance", function () {
    const { before, after, tolerance } = run.fds
    assert.ok(after, 'no fd snapshot after the run')
    assert.ok(after.kinds['tcp-open'] <= before.kinds['tcp-open'], JSON.stringify(run.fds))
    assert.ok(after.total <= before.total + tolerance, JSON.stringify(run.fds))
  })

  it('keeps the health cache within max_entries although more keys were offered', function () {
    const cache = run.cache
    assert.equal(cache.maxEntries, CACHE_BOUND, 'the probe did not report the configured bound')
    assert.ok(cache.distinct > CACHE_BOUND, `only ${cache.distinct} distinct keys: the bound was not pressed`)
    assert.ok(cache.peak <= CACHE_BOUND, `peak ${cache.peak}`)
    assert.ok(cache.size <= CACHE_BOUND, `final ${cache.size}`)
    assert.ok(cache.peak > 0)
  })
})
