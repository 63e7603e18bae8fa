'use strict'

// A UDP DNS server on 127.0.0.1 that also serves CNAME records, which haraka-test-fixtures'
// server cannot. It answers the way a recursive resolver hands answers to a stub: the CNAME
// chain from the question name, then the records of the type asked at the end of it. A chain
// that loops is answered with the CNAMEs it walked and nothing else, as a hostile or broken
// server might.

const dgram = require('node:dgram')

const dnsPacket = require('dns-packet')

const MAX_CHAIN = 16
const RCODES = { NOERROR: 0, NXDOMAIN: 3 }

/**
 * @param {Object<string, {cname?: string, a?: string[], aaaa?: string[],
 *   mx?: Array<{preference: number, exchange: string}>}>} zones
 * @returns {Promise<{port: number, close: () => Promise<void>}>}
 */
function startCnameDns(zones) {
  const zone = (name) => zones[String(name).toLowerCase().replace(/\.$/, '')]

  function answer(question) {
    const answers = []
    const seen = new Set()
    let name = question.name
    for (let hops = 0; hops < MAX_CHAIN; hops++) {
      const z = zone(name)
      if (!z) return { rcode: answers.length ? 'NOERROR' : 'NXDOMAIN', answers }
      if (!z.cname || question.type === 'CNAME') break
      answers.push({ type: 'CNAME', name, ttl: 60, data: z.cname })
      if (seen.has(z.cname)) return { rcode: 'NOERROR', answers }
      seen.add(name)
      name = z.cname
    }
    const z = zone(name) || {}
    if (question.type === 'A')
      for (const ip of z.a || []) answers.push({ type: 'A', name, ttl: 60, data: ip })
    if (question.type === 'AAAA')
      for (const ip of z.aaaa || []) answers.push({ type: 'AAAA', name, ttl: 60, data: ip })
    if (question.type === 'MX')
      for (const mx of z.mx || []) answers.push({ type: 'MX', name, ttl: 60, data: mx })
    return { rcode: 'NOERROR', answers }
  }

  return new Promise((resolve, reject) => {
    const sock = dgram.createSocket('udp4')
    sock.on('message', (msg, rinfo) => {
      let query
      try {
        query = dnsPacket.decode(msg)
      } catch {
        return // not DNS: stay silent
      }
      const [question] = query.questions
      const { rcode, answers } = answer(question)
      // dns-packet puts the RCODE in the low bits of flags.
      const flags =
        dnsPacket.AUTHORITATIVE_ANSWER |
        dnsPacket.RECURSION_AVAILABLE |
        (query.flags & dnsPacket.RECURSION_DESIRED) |
        RCODES[rcode]
      const reply = dnsPacket.encode({
        type: 'response',
        id: query.id,
        flags,
        questions: query.questions,
        answers,
      })
      sock.send(reply, rinfo.port, rinfo.address)
    })
    sock.once('error', reject)
    sock.bind(0, '127.0.0.1', () =>
      resolve({ port: sock.address().port, close: () => new Promise((r) => sock.close(r)) }),
    )
  })
}

module.exports = { startCnameDns }
