'use strict'

// The DNS server on loopback every Haraka and plugin resolver is pointed at, with zones set
// in bulk. The zones read as haraka-test-fixtures' server reads them (mx, a, aaaa, txt, rcode,
// delayMs, drop), and one query type of a name can also be dropped, delayed or failed on its
// own: `{ a: [...], aaaa: [...], dropTypes: ['AAAA'] }`, `delayMs: { AAAA: 300 }`,
// `rcode: { AAAA: 'SERVFAIL' }`. Built on dns-packet.

const dgram = require('node:dgram')
const dnsPacket = require('dns-packet')

const RCODE = { NOERROR: 0, FORMERR: 1, SERVFAIL: 2, NXDOMAIN: 3, NOTIMP: 4, REFUSED: 5 }
// RFC 1035 §4.1.1: QR, AA, RA; RD is copied from the query.
const QR_AA_RA = 0x8000 | 0x0400 | 0x0080
const RD = 0x0100

/**
 * @typedef {'A'|'AAAA'|'MX'|'TXT'} QueryType
 * @typedef {{mx?: Array<{preference: number, exchange: string}>, a?: string[], aaaa?: string[],
 *   txt?: string|string[], rcode?: string|Partial<Record<QueryType, string>>,
 *   delayMs?: number|Partial<Record<QueryType, number>>, drop?: boolean, dropTypes?: QueryType[]}} Zone
 * @typedef {{port: number, setZone: (name: string, zone: Zone) => void, clearZones: () => void,
 *   queries: () => Array<{name: string, type: string}>, close: () => Promise<void>}} TestDns
 */

const normalize = (name) => String(name).toLowerCase().replace(/\.$/, '')

/** The value of a zone field for one query type: the field itself, or its entry for the type. */
const perType = (value, type) => (value !== null && typeof value === 'object' ? value[type] : value)

/** The rcode and answers for one question; undefined: never answered. */
function answerFor(zone, name, type) {
  if (!zone) return { rcode: RCODE.NXDOMAIN, answers: [] }
  if (zone.drop || zone.dropTypes?.includes(type)) return undefined
  const rcode = perType(zone.rcode, type)
  if (rcode) {
    const code = RCODE[String(rcode).toUpperCase()]
    if (code === undefined) throw new Error(`unknown rcode: ${rcode}`)
    return { rcode: code, answers: [] }
  }
  const rr = (t, data) => ({ type: t, class: 'IN', name, ttl: 300, data })
  const answers = []
  if (type === 'A') for (const ip of zone.a ?? []) answers.push(rr('A', ip))
  if (type === 'AAAA') for (const ip of zone.aaaa ?? []) answers.push(rr('AAAA', ip))
  if (type === 'MX')
    for (const m of zone.mx ?? [])
      answers.push(rr('MX', { preference: m.preference ?? 10, exchange: m.exchange }))
  if (type === 'TXT' && zone.txt !== undefined)
    answers.push(rr('TXT', Array.isArray(zone.txt) ? zone.txt : [zone.txt]))
  // The name exists without records of this type: NOERROR and no answer (ENODATA).
  return { rcode: RCODE.NOERROR, answers }
}

/**
 * Starts the DNS server on 127.0.0.1 with these zones.
 * @param {Object<string, Zone>} [zones]
 * @returns {Promise<TestDns>}
 */
function startDns(zones = {}) {
  return new Promise((resolve, reject) => {
    const map = new Map()
    const setZone = (name, zone) => map.set(normalize(name), zone)
    for (const [name, zone] of Object.entries(zones)) setZone(name, zone)
    const seen = []
    const timers = new Set()
    const sock = dgram.createSocket('udp4')

    sock.on('message', (msg, rinfo) => {
      let query
      try {
        query = dnsPacket.decode(msg)
      } catch {
        return // malformed: stay silent
      }
      const [question] = query.questions ?? []
      if (!question) return
      const name = normalize(question.name)
      seen.push({ name, type: question.type })
      const zone = map.get(name)
      let answer
      try {
        answer = answerFor(zone, question.name, question.type)
      } catch {
        answer = { rcode: RCODE.SERVFAIL, answers: [] }
      }
      if (!answer) return
      const send = () => {
        const flags = QR_AA_RA | (query.flags & RD) | answer.rcode
        const response = dnsPacket.encode({
          type: 'response',
          id: query.id,
          flags,
          questions: query.questions,
          answers: answer.answers,
        })
        sock.send(response, rinfo.port, rinfo.address, () => {})
      }
      const delay = zone ? perType(zone.delayMs, question.type) : undefined
      if (!delay) return send()
      const timer = setTimeout(() => {
        timers.delete(timer)
        send()
      }, delay)
      timers.add(timer)
    })

    sock.once('error', reject)
    sock.bind(0, '127.0.0.1', () => {
      resolve({
        port: sock.address().port,
        setZone,
        clearZones: () => map.clear(),
        queries: () => seen.slice(),
        close: () =>
          new Promise((r) => {
            for (const t of timers) clearTimeout(t)
            timers.clear()
            sock.close(() => r())
          }),
      })
    })
  })
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
