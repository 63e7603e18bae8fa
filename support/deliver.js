'use strict'

// One message through a running Haraka, timed to the sink that took it, and the plugin
// settings the demo and the bench deliver with.

const { queuedUuid, sendMail, waitForOutcome } = require('./haraka')

/** The happy_eyeballs.ini the demo and the bench run with (startHaraka adds `[dns] servers`). */
function pluginIni(port) {
  return `[main]\nport=${port}\n\n[filter]\nallow[]=127.0.0.0/8\nallow[]=::1/128\n`
}

let seq = 0

/**
 * Submits one message and waits for its recorded outcome. A unique recipient finds the message
 * among the sinks; `ms` runs from just before the submission to the sink taking it.
 * @param {import('./haraka').HarakaHandle} h
 * @param {Array<{messages: Array<{to: string[], receivedAt: number}>}>} sinks
 * @param {string} domain
 * @param {{timeoutMs?: number, local?: string}} [opts]
 * @returns {Promise<{ms: number, t0: number, from: number, uuid?: string,
 *   outcome: import('./haraka').OutcomeSeen, message?: object, log: () => string}>}
 */
async function deliverOne(h, sinks, domain, { timeoutMs = 60000, local = 'rcpt' } = {}) {
  const to = `${local}-${++seq}@${domain}`
  const from = h.logLength()
  const t0 = performance.now()
  const info = await sendMail({ port: h.port, to })
  const uuid = queuedUuid(info)
  const outcome = await waitForOutcome(h, timeoutMs, { from, uuid })
  const message = sinks.flatMap((s) => s.messages).find((m) => m.to.includes(to))
  return {
    ms: message ? message.receivedAt - t0 : NaN,
    t0,
    from,
    uuid,
    outcome,
    message,
    log: () => h.log().slice(from),
  }
}

/** Like deliverOne, but anything other than a delivery that reached a sink throws. */
async function mustDeliver(h, sinks, domain, opts) {
  const r = await deliverOne(h, sinks, domain, opts)
  if (r.outcome.kind !== 'delivered') {
    throw new Error(`message to ${domain} was ${r.outcome.kind}, not delivered: ${r.outcome.line}`)
  }
  if (!r.message) throw new Error(`Haraka delivered a message to ${domain}, but no sink has it`)
  return r
}

module.exports = { pluginIni, deliverOne, mustDeliver }
