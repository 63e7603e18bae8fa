'use strict'

// The DNS server on loopback every Haraka and plugin resolver is pointed at: the
// haraka-test-fixtures server (its own module: the package index loads Haraka modules that
// print at load time), with zones set in bulk.

const fixtureDns = require('haraka-test-fixtures/lib/dns')

/**
 * @typedef {{mx?: Array<{preference: number, exchange: string}>, a?: string[], aaaa?: string[],
 *   rcode?: string, delayMs?: number}} Zone
 * @typedef {{port: number, setZone: (name: string, zone: Zone) => void, clearZones: () => void,
 *   close: () => Promise<void>}} TestDns
 */

/**
 * Starts the DNS server on 127.0.0.1 with these zones.
 * @param {Object<string, Zone>} [zones]
 * @returns {Promise<TestDns>}
 */
function startDns(zones = {}) {
  return fixtureDns.start(zones)
}

/** Sets every zone of `zones` on a running server. */
function setZones(dns, zones) {
  for (const [name, zone] of Object.entries(zones)) dns.setZone(name, zone)
}

/**
 * The set-up most end-to-end suites share, called inside a mocha describe(): one DNS server
 * for the suite; after each test every zone cleared and everything the test registered with
 * `cleanup` stopped, the last first.
 * @returns {{dns: TestDns, cleanup: (stop: () => unknown) => void}} `dns` once before() ran
 */
function dnsSuite() {
  const suite = {
    dns: /** @type {TestDns} */ (/** @type {unknown} */ (null)),
    cleanup: (stop) => stops.push(stop),
  }
  const stops = []
  before(async function () {
    suite.dns = await startDns()
  })
  after(async function () {
    await suite.dns?.close()
  })
  afterEach(async function () {
    for (const stop of stops.splice(0).reverse()) await stop()
    suite.dns?.clearZones()
  })
  return suite
}

module.exports = { startDns, setZones, dnsSuite }
