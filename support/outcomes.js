'use strict'

// What happened to each message, as data: a local Haraka plugin listed after every other
// plugin writes one JSON line per outbound outcome (delivered, deferred, bounced) to
// outcomes.jsonl in the Haraka dir: Haraka's own hook parameters and the happy-eyeballs
// DeliveryRecord the message carries in hmail.notes. Readers never learn from log text what
// the plugin did.

const fs = require('node:fs')
const path = require('node:path')

const { RECORD_NOTE } = require('../dist/lib/delivery')

const OUTCOME_PLUGIN_NAME = 'outcome_recorder'
const OUTCOME_FILE = 'outcomes.jsonl'

/**
 * Source of the recorder plugin. Haraka runs deferred/bounce hooks in plugin order after the
 * happy-eyeballs ones (registered first of all), so `err` is the reason Haraka then logs and
 * puts in the DSN. The file is appended synchronously before the hook answers; the log line
 * after it only wakes up readers that follow the log.
 */
const OUTCOME_PLUGIN = `'use strict'
const fs = require('node:fs')
const path = require('node:path')
const FILE = path.join(process.env.HARAKA, ${JSON.stringify(OUTCOME_FILE)})
const NOTE = ${JSON.stringify(RECORD_NOTE)}
// HE_OUTCOME_RECORDS=0 (startHaraka outcomeRecords: false): the outcome without the record, so
// a CPU measurement does not charge the plugin for this recorder's JSON of it.
const RECORDS = process.env.HE_OUTCOME_RECORDS !== '0'

exports.register = function () {
  this.register_hook('delivered', 'record_delivered')
  this.register_hook('deferred', 'record_deferred')
  this.register_hook('bounce', 'record_bounce')
}

// Anything that emits events (a socket) has no place in a record.
const emitterFree = (k, v) =>
  v && typeof v === 'object' && typeof v.on === 'function' && typeof v.emit === 'function' ? undefined : v

// One pass over the line: the recorder runs inside the Haraka whose CPU the bench measures.
function serialize(line, hmail) {
  const record = RECORDS && hmail.notes ? hmail.notes[NOTE] : undefined
  if (record === undefined) return JSON.stringify(line)
  try {
    return JSON.stringify({ ...line, record }, emitterFree)
  } catch (err) {
    return JSON.stringify({ ...line, recordError: String(err && err.message) })
  }
}

function write(plugin, hmail, kind, haraka) {
  const line = { kind, uuid: hmail.todo && hmail.todo.uuid, domain: hmail.todo && hmail.todo.domain, at: Date.now(), pid: process.pid, haraka, record: null }
  try {
    fs.appendFileSync(FILE, serialize(line, hmail) + '\\n')
    plugin.loginfo('recorded ' + kind)
  } catch (err) {
    plugin.logerror('cannot record the outcome: ' + err.message)
  }
}

const text = (err) => String(err && err.message !== undefined ? err.message : err)

exports.record_delivered = function (next, hmail, params) {
  const [host, ip, response, delay, port, mode, okRecips] = params || []
  write(this, hmail, 'delivered', { host, ip, response, delay, port, mode, ok_recips: (okRecips || []).map(String) })
  next()
}

exports.record_deferred = function (next, hmail, params) {
  write(this, hmail, 'deferred', { delay: params && params.delay, err: text(params && params.err) })
  next()
}

exports.record_bounce = function (next, hmail, err) {
  write(this, hmail, 'bounced', { err: text(err) })
  next()
}
`

/**
 * @typedef {object} Outcome
 * @property {'delivered'|'deferred'|'bounced'} kind
 * @property {string} uuid  the outbound item's uuid, `<transaction uuid>.<n>`
 * @property {string} domain
 * @property {number} at  Date.now() in Haraka when the hook ran
 * @property {number} pid  the Haraka process (a cluster worker) that delivered or deferred it
 * @property {object|null} record  the plugin's DeliveryRecord (lib/delivery.ts), null without one
 * @property {{host?: string, ip?: string, response?: string, delay?: number, port?: number,
 *   mode?: string, ok_recips?: string[], err?: string}} haraka  the hook's parameters
 *   (delivered: delay in s; deferred: seconds until the retry)
 * @property {string} [recordError]
 */

/**
 * Reads a Haraka dir's outcome file incrementally: read() returns every outcome so far,
 * parsing only what was appended since the last call.
 * @param {string} dir
 */
function outcomeReader(dir) {
  const file = path.join(dir, OUTCOME_FILE)
  /** @type {Outcome[]} */
  const all = []
  let offset = 0
  let partial = ''
  return {
    file,
    read() {
      let fd
      try {
        fd = fs.openSync(file, 'r')
      } catch (err) {
        if (err.code === 'ENOENT') return all
        throw err
      }
      try {
        const size = fs.fstatSync(fd).size
        if (size > offset) {
          const buf = Buffer.alloc(size - offset)
          fs.readSync(fd, buf, 0, buf.length, offset)
          offset = size
          const lines = (partial + buf.toString('utf8')).split('\n')
          partial = lines.pop()
          for (const line of lines) if (line) all.push(JSON.parse(line))
        }
      } finally {
        fs.closeSync(fd)
      }
      return all
    },
  }
}

/** True when an outcome belongs to the transaction `uuid` (from Haraka's queue reply) or is that item. */
const ofTransaction = (o, uuid) => o.uuid === uuid || o.uuid.startsWith(`${uuid}.`)

module.exports = { OUTCOME_PLUGIN_NAME, OUTCOME_PLUGIN, OUTCOME_FILE, outcomeReader, ofTransaction }
